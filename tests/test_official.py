"""Official checkpoints (apple/ml-videoflextok): conversion, refusal of bad files, and numerical parity with
the reference implementation on the committed fixtures (see tests/fixtures/README.md)."""

import argparse
import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from videoflex import SamplerConfig, VideoFlexTok, load_model
from videoflex.cli import convert
from videoflex.cli.errors import UserError
from videoflex.models.pretrained import check_state_dict
from videoflex.registry import LOADERS
from videoflex.tokenizers.flex.official.config import (
    canonical_layout,
    parse_official_config,
    read_official_config,
)
from videoflex.tokenizers.flex.official.keys import key_table, official_shapes
from videoflex.tokenizers.flex.official.loader import (
    convert_state_dict,
    is_official_checkpoint,
    load_official,
)
from videoflex.tokenizers.flex.presets import get_preset

FIXTURES = Path(__file__).parent / "fixtures"
CHECKPOINT = FIXTURES / "official_small.safetensors"
IO = FIXTURES / "official_small_io.safetensors"
TOLERANCE = 1e-4  # relative error: max |ours - reference| / max |reference|


def relative_error(ours: torch.Tensor, reference: torch.Tensor) -> float:
    return float((ours - reference).abs().max() / reference.abs().max())


def metadata(file: Path) -> dict[str, str]:
    with safe_open(str(file), framework="pt") as f:
        return dict(f.metadata())


def variant(model: VideoFlexTok, **changes) -> VideoFlexTok:
    """The same weights under a changed config (e.g. posterior mean instead of sampling)."""
    with torch.device("meta"):
        other = VideoFlexTok(dataclasses.replace(model.config, **changes))
    other.load_state_dict(model.state_dict(), assign=True)
    return other.eval()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors: one thread is several times faster than two on a shared CPU (no spin-waiting)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def io() -> dict[str, torch.Tensor]:
    return load_file(str(IO))


@pytest.fixture(scope="module")
def cases() -> dict[str, dict]:
    return json.loads(metadata(IO)["cases"])


@pytest.fixture(scope="module")
def model() -> VideoFlexTok:
    return load_model(CHECKPOINT)  # through the registered converter


@pytest.fixture(scope="module")
def mean_model(model) -> VideoFlexTok:
    return variant(model, sample_posterior=False)


# ------------------------------------------------------------------------------------------- the config


def test_converted_config(model):
    c = model.config
    assert c.image_size == (32, 32) and c.chunk_frames == 17 and c.chunk_overlap == 1
    assert (c.encoder.width, c.encoder.depth, c.encoder.head_dim, c.encoder.patch_size) == (64, 2, 32, 1)
    assert (c.decoder.width, c.decoder.depth, c.decoder.attention) == (64, 2, "full")
    assert c.decoder.timestep_scale == 500.0  # 1000 / max_timestep (2.0 in the fixture config)
    assert c.num_registers == 32 and c.fsq.levels == (8, 8, 8, 5, 5, 5)
    assert c.vae.base_channels == 8 and c.sample_posterior
    assert c.sampler == SamplerConfig()  # the released README's settings: 30 Euler steps, APG 20, 0.6
    assert next(model.parameters()).dtype == torch.float32  # bf16 file, float32 model (as the reference)


def test_is_official_checkpoint(tmp_path, model):
    assert is_official_checkpoint(CHECKPOINT)
    assert not is_official_checkpoint(IO)  # safetensors, but not a model
    model.save_pretrained(tmp_path / "native")
    assert not is_official_checkpoint(tmp_path / "native")
    assert not is_official_checkpoint(tmp_path / "nothing-here")
    assert [loader.name for loader in LOADERS if loader.detect(CHECKPOINT)] == ["apple/ml-videoflextok"]


def test_from_pretrained_points_official_files_to_load_model():
    """VideoFlexTok.from_pretrained reads the native format only (the model does not import the converter)."""
    with pytest.raises(ValueError, match=r"not a videoflex model.*videoflex\.load_model.*videoflex convert"):
        VideoFlexTok.from_pretrained(CHECKPOINT)


# ------------------------------------------------------------------------------------------- parity


def test_sampled_tokens_match_reference(model, io):
    """Posterior sampling draws from the global RNG, as the reference: same seed, same ids."""
    seeds = json.loads(metadata(IO)["tokenize_seeds"])
    for name, frames in (("ids17_sampled", 17), ("ids33_sampled", 33)):
        torch.manual_seed(seeds[name])
        assert torch.equal(model.tokenize(io["video33"][:, :, :frames]), io[name]), name


def test_mean_tokens_and_latents_match_reference(mean_model, io):
    with torch.no_grad():
        latents = mean_model.vae.encode(io["video33"])
    # float rounding only: the VAE sums in another order than the reference (its temporal taps as matrix
    # products on channels-last frames, issue 19); measured 1.2e-6, bit-identical before
    assert relative_error(latents, io["latents33_mean"]) < 1e-5
    assert torch.equal(mean_model.tokenize(io["video33"]), io["ids33_mean"])
    assert torch.equal(io["ids33_mean"][:, :5], io["ids17_mean"])  # chunk 0 is the 17-frame clip


def sampler_of(case: dict) -> SamplerConfig:
    return SamplerConfig(steps=case["steps"], guidance=case["guidance"], guidance_method=case["method"],
                         apg_threshold=0.6, apg_eta=case["eta"], apg_momentum=case["momentum"])


CASE_NAMES = ["c17_k1", "c17_k16_cond1", "c17_k32", "c17_k32_cond5", "v33_k1_cond1", "v33_k16", "v33_k32_cond1",
              "c17_k16_blockcausal"]


@pytest.mark.parametrize("name", CASE_NAMES)
def test_decoded_video_matches_reference(mean_model, io, cases, name):
    """One 17-frame chunk and a 33-frame video (two chunks, the second conditioned on the first's last
    decoded frame), with and without conditioning frames, keep k in {1, 16, 32 = n}; posterior means."""
    case = cases[name]
    model = mean_model
    if name.endswith("blockcausal"):
        model = variant(mean_model, decoder=dataclasses.replace(mean_model.config.decoder, attention="block_causal"))
    ids = io["ids17_mean" if case["frames"] == 17 else "ids33_mean"]
    video = io["video33"][:, :, : case["frames"]]
    cond = video[:, :, : case["cond"]] if case["cond"] else None
    # the reference's flow noise: one draw per chunk from a generator seeded with the case's seed
    generator = torch.Generator().manual_seed(case["seed"])
    noise = io[f"{name}.noise"]
    assert torch.equal(torch.cat([torch.randn(1, *noise.shape[1:], generator=generator)
                                  for _ in range(noise.shape[0])]), noise)
    out = model.detokenize(ids, keep=case["keep"], generator=torch.Generator().manual_seed(case["seed"]),
                           conditioning_frames=cond, sampler=sampler_of(case))
    reference = io[f"{name}.video"].clamp(-1, 1)  # the reference does not clamp; we do
    assert out.shape == reference.shape
    assert relative_error(out, reference) < TOLERANCE
    if case["frames"] == 17:  # one chunk: the sampled latents themselves
        with torch.no_grad():
            prefix = model.encode_video(cond) if cond is not None else None
            latents = model.decode_latents(ids, case["keep"], noise, sampler_of(case), prefix)
        assert relative_error(latents, io[f"{name}.latents"]) < TOLERANCE


# ------------------------------------------------------------------------------------------- full size


def test_full_size_k600_layout_maps_onto_preset():
    """An official-format state dict at the full k600-d18 size (reference names and shapes, meta tensors)
    converts onto the k600-d18 preset: every tensor of ours is covered with the right shape."""
    config = get_preset("flex-k600-d18")
    shapes = official_shapes(config, canonical_layout(config))
    # counts measured on the reference code built at this size (tensors, parameters)
    expected = {"vae.": (416, 157_949_351), "encoder.": (132, 288_210_822), "decoder.": (178, 577_943_440)}
    for prefix, (tensors, params) in expected.items():
        part = [s for k, s in shapes.items() if k.startswith(prefix)]
        assert (len(part), sum(math.prod(s) for s in part)) == (tensors, params), prefix
    assert shapes["encoder.module_dict.enc_posemb_module.posembs"] == (3, 1, 1152, 16)
    assert shapes["decoder.module_dict.dec_transformer.blocks.17.adaLN_modulation.1.weight"] == (13824, 1152)
    state = {f"video_tokenizer.{k}": torch.empty(s, device="meta") for k, s in shapes.items()}
    converted = convert_state_dict(state, config, canonical_layout(config))
    with torch.device("meta"):
        model = VideoFlexTok(config)
    check_state_dict(model, converted, "flex-k600-d18")
    model.load_state_dict(converted, strict=True, assign=True)


# ------------------------------------------------------------------------------------------- refusals


@pytest.fixture(scope="module")
def official_state() -> dict[str, torch.Tensor]:
    return load_file(str(CHECKPOINT))


def write(path: Path, state: dict[str, torch.Tensor], meta: dict[str, str] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(path), metadata=meta)
    return path


BLOCK = "video_tokenizer.decoder.module_dict.dec_transformer.blocks.1.mlp.fc2.weight"
POSEMB = "video_tokenizer.encoder.module_dict.enc_posemb_module.posembs"


def test_missing_tensor_is_refused(tmp_path, official_state):
    state = {k: v for k, v in official_state.items() if k != BLOCK}
    file = write(tmp_path / "missing.safetensors", state, metadata(CHECKPOINT))
    with pytest.raises(ValueError, match=r"missing \[decoder\.module_dict\.dec_transformer\.blocks\.1\.mlp\.fc2"):
        load_model(file)


def test_unexpected_tensor_is_refused(tmp_path, official_state):
    state = dict(official_state, **{"video_tokenizer.encoder.module_dict.enc_extra.weight": torch.zeros(3)})
    file = write(tmp_path / "extra.safetensors", state, metadata(CHECKPOINT))
    with pytest.raises(ValueError, match=r"unexpected \[encoder\.module_dict\.enc_extra\.weight\]"):
        load_model(file)


def test_misshaped_tensor_is_refused(tmp_path, official_state):
    state = dict(official_state, **{POSEMB: official_state[POSEMB][..., :4]})
    file = write(tmp_path / "shape.safetensors", state, metadata(CHECKPOINT))
    with pytest.raises(ValueError, match=r"mis-shaped.*enc_posemb_module\.posembs: \(3, 1, 64, 4\) vs \(3, 1, 64, 8\)"):
        load_model(file)


def edited_config(edit) -> dict[str, str]:
    """The fixture's metadata with ``edit(video_flex_tok_config)`` applied."""
    hub = read_official_config(CHECKPOINT)
    edit(hub["video_flex_tok"])
    return {k: str(v) for k, v in hub.items()}


def test_unknown_target_is_refused_not_imported(tmp_path, official_state):
    def edit(vft):
        vft["encoder"]["module_dict"]["enc_evil"] = {"_target_": "os.system", "command": "echo hi"}

    file = write(tmp_path / "evil.safetensors", official_state, edited_config(edit))
    with pytest.raises(ValueError, match=r"unknown module classes.*enc_evil: os\.system"):
        load_official(file)


def test_unsupported_option_is_refused(tmp_path, official_state):
    def edit(vft):
        vft["decoder"]["module_dict"]["dec_transformer"]["qkv_bias"] = True

    file = write(tmp_path / "bias.safetensors", official_state, edited_config(edit))
    with pytest.raises(ValueError, match=r"dec_transformer\.qkv_bias = True is not supported"):
        load_official(file)


def test_no_config_is_refused(tmp_path, official_state):
    file = write(tmp_path / "bare.safetensors", official_state)
    with pytest.raises(ValueError, match="no VideoFlexTok config found"):
        load_model(file)


# ------------------------------------------------------------------------------------------- layouts


def assert_same_weights(a: VideoFlexTok, b: VideoFlexTok) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_folder_with_config_json_and_unprefixed_keys(tmp_path, model, official_state):
    """A Hugging Face snapshot layout: model.safetensors (keys without ``video_tokenizer.``) + config.json."""
    folder = tmp_path / "snapshot"
    write(folder / "model.safetensors", {k.removeprefix("video_tokenizer."): v for k, v in official_state.items()})
    (folder / "config.json").write_text(json.dumps(read_official_config(CHECKPOINT)))
    assert_same_weights(load_model(folder), model)
    renamed = tmp_path / "single"  # a folder holding one differently named file (config in its metadata)
    write(renamed / "videoflextok_small.safetensors", official_state, metadata(CHECKPOINT))
    assert_same_weights(load_model(renamed), model)


def test_decoder_packing_order_sets_the_adaln_split(tmp_path, model, official_state):
    """With registers packed first, each adaLN matrix holds the register chunk first: same model."""
    def edit(vft):
        packer = vft["decoder"]["module_dict"]["dec_seq_packer"]
        packer["input_list_read_keys"] = packer["input_list_read_keys"][::-1]
        vft["decoder"]["module_dict"]["dec_unpacker"]["inner_seq_write_keys"] = \
            vft["decoder"]["module_dict"]["dec_unpacker"]["inner_seq_write_keys"][::-1]

    state = dict(official_state)
    for key in [k for k in state if "dec_transformer" in k and "adaLN_modulation" in k]:
        patches, registers = state[key].chunk(2, dim=0)
        state[key] = torch.cat([registers, patches])
    file = write(tmp_path / "swapped.safetensors", state, edited_config(edit))
    assert_same_weights(load_official(file), model)


def test_repa_head_weights_are_dropped(tmp_path, model, official_state):
    def edit(vft):
        vft["decoder"]["module_dict"]["dec_repa"] = {
            "_target_": "videoflextok.model.postprocessors.heads.TransformerHead", "read_key": "dec_repa_in",
            "write_key": "dec_repa_out", "dim": 64, "dim_out": 32, "depth": 1}

    state = dict(official_state, **{"video_tokenizer.decoder.module_dict.dec_repa.out_proj.weight": torch.zeros(32, 64)})
    file = write(tmp_path / "repa.safetensors", state, edited_config(edit))
    assert_same_weights(load_official(file), model)


def test_key_table_names_every_tensor_once():
    config, layout = parse_official_config(read_official_config(CHECKPOINT), vae_base_channels=8)
    rules = key_table(config, layout)
    ours = [k for rule in rules for k in rule.ours]
    assert len(ours) == len(set(ours)) and len({r.official for r in rules}) == len(rules)


def convert_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    convert.add_parser(parser.add_subparsers())
    return parser.parse_args(["convert", *argv])


def test_convert_cli_writes_native_format(tmp_path, model):
    args = convert_args(str(CHECKPOINT), "-o", str(tmp_path / "out"))
    assert args.run(args) == 0
    native = VideoFlexTok.from_pretrained(tmp_path / "out")
    assert native.config == model.config
    assert_same_weights(native, model)
    assert native.identity == model.identity  # float32 file: the same weights, hence the same identity


def test_convert_cli_refuses_other_files(tmp_path):
    args = convert_args(str(IO), "-o", str(tmp_path / "out"))
    with pytest.raises(UserError, match="not an official VideoFlexTok checkpoint"):
        args.run(args)
