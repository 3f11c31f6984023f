"""The 3D-grid tokenizer (kind ``grid-tokenizer``) on its tiny preset: shapes, causality, determinism, token files,
clear errors, save/load, sizes matched to the flex presets, and training and generators through the commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import randomize_
from safetensors.torch import load_file

from videoflex import KINDS, PRESETS, load_model
from videoflex.cli.main import main
from videoflex.generators.ar.model import ARGenerator
from videoflex.io.tokens import TokenMetadata, VideoTokens, load_tokens, save_tokens
from videoflex.tokenizers.base import TokenLayout
from videoflex.tokenizers.grid.config import GridDecoderConfig, GridEncoderConfig, GridTokenizerConfig
from videoflex.tokenizers.grid.model import GridTokenizer
from videoflex.tokenizers.grid.presets import tiny
from videoflex.tokenizers.training import draw_training
from videoflex.vae.config import VAEConfig

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def grid_model() -> GridTokenizer:
    """grid-tiny with every parameter random (no zero-initialised head or code projection hides a bug)."""
    return randomize_(GridTokenizer.from_preset("grid-tiny")).eval()


@pytest.fixture
def video() -> torch.Tensor:
    return torch.rand(2, 3, 17, 32, 32, generator=gen(1)) * 2 - 1


def test_the_kind_is_registered_with_its_presets():
    assert KINDS["grid-tokenizer"].model_class is GridTokenizer
    assert {"grid-tiny", "grid-shapes", "grid-demo"} <= set(PRESETS)
    model = load_model("grid-tiny")
    assert isinstance(model, GridTokenizer) and model.identity.kind == "grid-tokenizer"
    assert model.layout == TokenLayout(16, "grid", (4, 4)) and not model.layout.prefix_decodable
    assert load_model("grid-shapes").layout == TokenLayout(64, "grid", (8, 8))  # 32x32 / 4 -> 8x8 patches
    assert load_model("grid-shapes").codebook_size == 1000  # flex-shapes' FSQ [8,5,5,5]


@pytest.mark.parametrize("frames", [1, 5, 17, 33, 40])
def test_shapes_for_any_frame_count(grid_model, frames):
    video = torch.rand(1, 3, frames, 32, 32, generator=gen()) * 2 - 1
    ids = grid_model.tokenize(video)
    assert ids.dtype == torch.int64
    assert ids.shape == (1, 1 + -(-(frames - 1) // 4), 16)
    assert 0 <= int(ids.min()) and int(ids.max()) < 64000
    out = grid_model.detokenize(ids, num_frames=frames, generator=gen())
    assert out.shape == (1, 3, frames, 32, 32) and out.dtype == torch.float32
    assert out.min() >= -1 and out.max() <= 1


def test_tokens_vary_with_content_and_position(grid_model, video):
    ids = grid_model.tokenize(video)
    assert ids.unique().numel() > 10
    assert not torch.equal(ids[0], ids[1])


def test_each_token_belongs_to_its_patch_at_the_first_step(grid_model, video):
    """With attention the patches mix, but changing one corner patch's pixels changes its own token."""
    ids = grid_model.tokenize(video)
    changed = video.clone()
    changed[:, :, 0, :8, :8] = -changed[:, :, 0, :8, :8]  # frame 0 = step 0; the 8x8 pixels of patch (0, 0)
    assert not torch.equal(ids[:, 0, 0], grid_model.tokenize(changed)[:, 0, 0])


def test_future_frames_do_not_change_past_tokens(grid_model, video):
    ids = grid_model.tokenize(video)
    changed = video.clone()
    changed[:, :, 9:] = torch.rand(changed[:, :, 9:].shape, generator=gen(5)) * 2 - 1  # frames after step 2
    ids_changed = grid_model.tokenize(changed)
    assert torch.equal(ids[:, :3], ids_changed[:, :3])  # steps 0..2 cover frames 0..8
    assert not torch.equal(ids[:, 3:], ids_changed[:, 3:])


def test_later_tokens_do_not_change_earlier_frames(grid_model, video):
    """The decoder is causal in time: ids of step 4 (frames 13..16) leave frames 0..12 as they were (without
    APG, whose norm over the whole chunk couples its steps)."""
    ids = grid_model.tokenize(video)
    changed = ids.clone()
    changed[:, 4] = torch.randint(0, 64000, changed[:, 4].shape, generator=gen(7))
    a = grid_model.detokenize(ids, guidance=1.0, generator=gen())
    b = grid_model.detokenize(changed, guidance=1.0, generator=gen())
    assert torch.equal(a[:, :, :13], b[:, :, :13])
    assert not torch.equal(a[:, :, 13:], b[:, :, 13:])


def test_same_generator_same_output_and_different_seed_differs(grid_model, video):
    ids = grid_model.tokenize(video)
    assert torch.equal(ids, grid_model.tokenize(video))
    a = grid_model.detokenize(ids, generator=gen(3))
    assert torch.equal(a, grid_model.detokenize(ids, generator=gen(3)))
    assert not torch.equal(a, grid_model.detokenize(ids, generator=gen(4)))
    other = ids.clone()
    other[:, 0, 5] = (other[:, 0, 5] + 1) % 64000
    assert not torch.equal(a, grid_model.detokenize(other, generator=gen(3)))  # every token is read


def test_ids_round_trip_through_a_token_file(grid_model, video, tmp_path):
    ids = grid_model.tokenize(video[:1])
    meta = TokenMetadata.for_model(grid_model, num_frames=17, fps=8.0, source_size=(32, 32))
    path = save_tokens(tmp_path / "clip.tokens.safetensors", VideoTokens(ids[0], meta))
    loaded = load_tokens(path, model=grid_model)
    assert torch.equal(loaded.ids, ids[0]) and loaded.metadata.num_registers == 16
    assert loaded.metadata.model == grid_model.identity
    out = grid_model.detokenize(loaded.ids[None], num_frames=loaded.metadata.num_frames, generator=gen())
    assert out.shape == (1, 3, 17, 32, 32)
    assert torch.equal(out, grid_model.detokenize(ids, num_frames=17, generator=gen()))


@pytest.mark.parametrize(("make", "match"), [
    (lambda: torch.rand(1, 3, 5, 64, 64), "model takes 32x32"),
    (lambda: torch.rand(1, 3, 5, 30, 30), "divisible by 8"),
    (lambda: torch.rand(1, 5, 32, 32), r"\[B, 3, T, H, W\]"),
    (lambda: torch.randint(0, 255, (1, 3, 5, 32, 32), dtype=torch.uint8), "float tensor"),
    (lambda: torch.rand(1, 3, 5, 32, 32) * 255, "uint8-range"),
])
def test_bad_videos_are_refused(grid_model, make, match):
    with pytest.raises(ValueError, match=match):
        grid_model.tokenize(make())


def test_bad_ids_and_keep_are_refused(grid_model, video):
    ids = grid_model.tokenize(video)
    with pytest.raises(ValueError, match=r"a prefix of them cannot be\s+decoded \(keep all 16\)"):
        grid_model.detokenize(ids, keep=4)
    with pytest.raises(ValueError, match=r"keep must be an integer in \[1, 16\]"):
        grid_model.detokenize(ids, keep=17)
    with pytest.raises(ValueError, match=r"shape \[B, t, 16\] \(one id per patch of the 4x4 grid\)"):
        grid_model.detokenize(ids[..., :8])
    with pytest.raises(ValueError, match=r"shape \[B, t, 16\]"):
        grid_model.detokenize(ids[0])
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 64000\); got \[0, 64000\]"):
        grid_model.detokenize(torch.cat([ids[..., :15] * 0, torch.full_like(ids[..., :1], 64000)], dim=-1))
    with pytest.raises(ValueError, match="integer tensor"):
        grid_model.detokenize(ids.float())
    with pytest.raises(ValueError, match="no time step"):
        grid_model.detokenize(ids[:, :0])


def test_config_errors_are_one_line():
    base = tiny()
    vae = VAEConfig(kind="space_to_depth", latent_channels=192, temporal_factor=4, spatial_factor=4)
    with pytest.raises(ValueError, match="patch sizes must be equal"):
        GridTokenizerConfig(name="x", image_size=(32, 32), vae=vae, encoder=base.encoder,
                            decoder=GridDecoderConfig(width=64, depth=1, head_dim=32, patch_size=1))
    with pytest.raises(ValueError, match="nested_dropout must be false"):
        GridTokenizerConfig(name="x", image_size=(32, 32), vae=vae, encoder=base.encoder, decoder=base.decoder,
                            loss=type(base.loss)())
    with pytest.raises(ValueError, match="not divisible by VAE factor x patch size = 8"):
        GridTokenizerConfig(name="x", image_size=(36, 36), vae=vae, encoder=base.encoder, decoder=base.decoder)
    with pytest.raises(ValueError, match="chunk_frames must be 1 \\+ 4\\*m"):
        GridTokenizerConfig(name="x", image_size=(32, 32), vae=vae, encoder=base.encoder, decoder=base.decoder,
                            chunk_frames=16)
    with pytest.raises(ValueError, match="code_init_std must be >= 0"):
        GridEncoderConfig(width=64, depth=1, head_dim=32, code_init_std=-1.0)
    with pytest.raises(ValueError, match="residual tokens \\(fsq.residuals\\) refine a flex tokenizer's registers"):
        GridTokenizerConfig(name="x", image_size=(32, 32), vae=vae, encoder=base.encoder, decoder=base.decoder,
                            fsq=type(base.fsq)(bound="clip", residuals=((1, 0),)))
    with pytest.raises(ValueError, match="temporal prediction \\(fsq.temporal_prediction\\) belongs to a flex"):
        GridTokenizerConfig(name="x", image_size=(32, 32), vae=vae, encoder=base.encoder, decoder=base.decoder,
                            fsq=type(base.fsq)(bound="clip", temporal_prediction=True))


def test_save_load_round_trip_keeps_identity_and_ids(grid_model, video, tmp_path):
    folder = grid_model.save_pretrained(tmp_path / "grid")
    loaded = load_model(folder)
    assert type(loaded) is GridTokenizer and loaded.config == grid_model.config
    assert loaded.identity == grid_model.identity
    a, b = grid_model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(loaded.tokenize(video), grid_model.tokenize(video))
    with pytest.raises(ValueError, match="holds a model of kind 'grid-tokenizer', not 'flex-tokenizer'"):
        KINDS["flex-tokenizer"].model_class.from_pretrained(folder)


def test_the_identity_ignores_sampler_and_loss_settings(grid_model):
    import dataclasses

    config = grid_model.config
    changed = dataclasses.replace(config, sampler=dataclasses.replace(config.sampler, steps=9),
                                  loss=dataclasses.replace(config.loss, time_mean=3.0))
    assert GridTokenizer.hash_config(changed) == GridTokenizer.hash_config(config)
    deeper = dataclasses.replace(config, decoder=dataclasses.replace(config.decoder, depth=3))
    assert GridTokenizer.hash_config(deeper) != GridTokenizer.hash_config(config)


def test_training_loss_backpropagates_to_encoder_and_decoder(grid_model, video):
    model = randomize_(GridTokenizer.from_preset("grid-tiny"), seed=2)
    latents = model.encode_video(video)
    draws = draw_training(model.config.loss, 16, tuple(latents.shape), gen(3))
    assert torch.equal(draws.keep, torch.full((2,), 16))  # no nested dropout
    out = model.training_forward(latents, draws, feature_block=1)
    assert out.loss.dim() == 0 and torch.isfinite(out.loss)
    assert out.features.shape == (2, 5, 16, 64)
    out.loss.backward()
    assert model.encoder.blocks[0].attn.wq.weight.grad.abs().sum() > 0  # through FSQ's straight-through
    assert model.decoder.blocks[0].attn.wq.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(("grid_name", "flex_name"), [("grid-shapes", "flex-shapes"), ("grid-demo", "flex-demo")])
def test_presets_match_the_flex_sizes_within_ten_percent(grid_name, flex_name):
    def count(name: str) -> int:
        kind = PRESETS[name].kind
        with torch.device("meta"):
            return sum(p.numel() for p in kind.model_class(kind.presets[name]()).parameters())

    grid, flex = count(grid_name), count(flex_name)
    assert abs(grid - flex) <= 0.1 * flex, (grid, flex)
    g, f = PRESETS[grid_name].config(), PRESETS[flex_name].config()
    assert (g.image_size, g.vae, g.fsq, g.encoder.width) == (f.image_size, f.vae, f.fsq, f.encoder.width)
    assert (g.sampler, g.loss.time_mean, g.decoder.prediction) == (f.sampler, f.loss.time_mean, f.decoder.prediction)


# ------------------------------------------------------------------------------------ through the commands


def tokenizer_recipe(out: Path, cache: Path, **extra: object) -> list[str]:
    items = {"out_dir": str(out), "model": "grid-tiny", "steps": 2, "batch_size": 2, "save_every": 2,
             "log_every": 1, "eval_every": 2, "eval_clips": 2, "eval_steps": 1, "data.size": 32,
             "data.frames": 9, "data.cache_dir": str(cache), "data.train": "[{kind: shapes, count: 4}]",
             "data.eval": "[{kind: shapes, count: 2, seed: 7}]", "data.in_memory": "true",
             "optim.warmup_steps": 1, **extra}
    return [f"{k}={v}" for k, v in items.items()]


def test_train_tokenizer_trains_a_grid_model(tmp_path):
    run = tmp_path / "run"
    assert main(["train", "tokenizer", "--quiet", *tokenizer_recipe(run, tmp_path / "cache")]) == 0
    model = load_model(run / "model")
    assert isinstance(model, GridTokenizer) and model.config.name == "grid-tiny"
    start = GridTokenizer.from_preset("grid-tiny").state_dict()
    trained = load_file(str(run / "model" / "model.safetensors"))
    assert not torch.equal(trained["decoder.head.weight"], start["decoder.head.weight"])
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    evals = [r for r in log if any(k.startswith("psnr_k") for k in r)]
    assert evals and {k for k in evals[-1] if k.startswith("psnr_k")} == {"psnr_k16"}  # the grid decodes at N only

    # the decoder stage from the trained model: the encoder is frozen, so every id stays what it was
    again = tmp_path / "decoder"
    assert main(["train", "tokenizer", "--quiet", *tokenizer_recipe(again, tmp_path / "cache", model=str(run / "model"),
                                                                    stage="decoder")]) == 0
    stage2 = load_model(again / "model")
    assert stage2.config.decoder.attention == "full" and stage2.config.loss.prefix_prob == 0.5
    clip = torch.rand(1, 3, 9, 32, 32, generator=gen(2)) * 2 - 1
    assert torch.equal(stage2.tokenize(clip), model.tokenize(clip))


def test_train_tokenizer_refuses_a_generator_preset(tmp_path, capsys):
    assert main(["train", "tokenizer", "--quiet", *tokenizer_recipe(tmp_path / "r", tmp_path / "c",
                                                                    model="ar-debug")]) == 2
    err = capsys.readouterr().err
    assert "a preset of kind 'ar-generator'; this task trains 'flex-tokenizer' and 'grid-tokenizer' models" in err


def test_grid_ids_train_a_generator_in_raster_order(tmp_path):
    tokens = tmp_path / "tokens"
    assert main(["tokenize-dataset", "--source", "shapes", "--count", "8", "--frames", "9", "--size", "32",
                 "--label-by", "colour", "--model", "grid-tiny", "--clips-per-shard", "8", "--quiet",
                 "-o", str(tokens)]) == 0
    run = tmp_path / "gen"
    items = {"out_dir": str(run), "model": "ar-debug", "data": str(tokens), "tokenizer": "grid-tiny", "steps": 3,
             "batch_size": 4, "save_every": 3, "log_every": 1, "eval_every": 1000, "eval_samples": 0,
             "optim.warmup_steps": 1, "num_workers": 0}
    assert main(["train", "generator", "--quiet", *[f"{k}={v}" for k, v in items.items()]]) == 0
    generator = ARGenerator.from_pretrained(run / "model")
    c = generator.config
    assert (c.vocab_size, c.tokens_per_step, c.max_steps) == (64000, 16, 3)  # all 4x4 ids of 3 steps
    assert c.tokenizer.identity.same_model(load_model("grid-tiny").identity)
    video = tmp_path / "red.mp4"
    assert main(["generate", "--model", str(run / "model"), "--class", "red", "--frames", "9", "--quiet",
                 "-o", str(video)]) == 0
    assert video.stat().st_size > 0
