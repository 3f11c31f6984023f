"""Behaviour of the public tokenizer API on the tiny preset (random weights)."""

import dataclasses
from types import SimpleNamespace

import pytest
import torch
from conftest import assert_prefix_decodes, randomize_

from videoflex import VideoFlexTok
from videoflex.tokenizers.chunking import plan_chunks, plan_from_steps
from videoflex.utils.dataclass_io import to_json


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("frames", [1, 5, 17, 33, 40])
def test_shapes_for_any_frame_count(tiny_model, frames):
    video = torch.rand(1, 3, frames, 32, 32, generator=gen()) * 2 - 1
    ids = tiny_model.tokenize(video)
    assert ids.dtype == torch.int64
    assert ids.shape == (1, 1 + -(-(frames - 1) // 4), 16)
    assert 0 <= int(ids.min()) and int(ids.max()) < 64000
    out = tiny_model.detokenize(ids, keep=4, num_frames=frames, generator=gen())
    assert out.shape == (1, 3, frames, 32, 32)
    assert out.min() >= -1 and out.max() <= 1


def test_tokens_vary_with_content(tiny_model, video):
    ids = tiny_model.tokenize(video)
    assert ids.unique().numel() > 10
    assert not torch.equal(ids[0], ids[1])


def test_future_frames_do_not_change_past_tokens(tiny_model, video):
    ids = tiny_model.tokenize(video)
    changed = video.clone()
    changed[:, :, 9:] = torch.rand(changed[:, :, 9:].shape, generator=gen(5)) * 2 - 1  # frames after step 2
    ids_changed = tiny_model.tokenize(changed)
    assert torch.equal(ids[:, :3], ids_changed[:, :3])  # steps 0..2 cover frames 0..8
    assert not torch.equal(ids[:, 3:], ids_changed[:, 3:])


def test_later_registers_do_not_change_earlier_tokens(tiny_model, video):
    ids = tiny_model.tokenize(video)
    step, i = 2, 5
    registers = tiny_model.encoder.registers
    saved = registers.detach().clone()
    try:
        with torch.no_grad():
            registers[step, i + 1:] += torch.randn(registers[step, i + 1:].shape, generator=gen(3))
        ids_perturbed = tiny_model.tokenize(video)
    finally:
        with torch.no_grad():
            registers.copy_(saved)
    assert torch.equal(ids[:, :step], ids_perturbed[:, :step])
    assert torch.equal(ids[:, step, : i + 1], ids_perturbed[:, step, : i + 1])
    assert not torch.equal(ids[:, step, i + 1:], ids_perturbed[:, step, i + 1:])


@pytest.mark.parametrize("keep", [1, 4, 15])
def test_prefix_decodes_without_the_rest(tiny_model, video, keep):
    ids = tiny_model.tokenize(video)
    scrambled = ids.clone()
    scrambled[..., keep:] = torch.randint(0, 64000, scrambled[..., keep:].shape, generator=gen(9))
    a = tiny_model.detokenize(ids, keep=keep, generator=gen())
    b = tiny_model.detokenize(scrambled, keep=keep, generator=gen())
    c = tiny_model.detokenize(ids[..., :keep], keep=keep, generator=gen())  # the prefix alone
    assert torch.equal(a, b) and torch.equal(a, c)
    other = tiny_model.detokenize(ids, keep=16, generator=gen())
    assert not torch.equal(a, other)


def test_register_positions_order_the_decoder_tokens(tiny_model, video):
    """Without register positions a step's kept tokens reach the decoder as a set (any order decodes
    alike); with them the order matters, and a prefix still decodes without the rest."""
    config = tiny_model.config
    positioned = VideoFlexTok(dataclasses.replace(
        config, decoder=dataclasses.replace(config.decoder, register_positions=True)))
    positioned.load_state_dict(tiny_model.state_dict(), strict=False)
    randomize_(positioned.decoder, seed=4)
    positioned.eval()
    ids = tiny_model.tokenize(video)
    swapped = ids.clone()
    swapped[..., [0, 3]] = ids[..., [3, 0]]
    for model, same in ((tiny_model, True), (positioned, False)):
        a = model.detokenize(ids, keep=4, generator=gen())
        b = model.detokenize(swapped, keep=4, generator=gen())
        assert torch.allclose(a, b, atol=1e-5) == same
    scrambled = ids.clone()
    scrambled[..., 4:] = torch.randint(0, 64000, scrambled[..., 4:].shape, generator=gen(9))
    assert torch.equal(positioned.detokenize(ids, keep=4, generator=gen()),
                       positioned.detokenize(scrambled, keep=4, generator=gen()))


def test_zero_init_input_starts_from_positions_alone(video):
    """With ``zero_init_input`` the projection of the noised latents starts at zero, the decoder's only
    path from its input: the first predictions ignore the noise, and the projection still learns."""
    config = VideoFlexTok.from_preset("flex-tiny").config
    model = VideoFlexTok(dataclasses.replace(config, decoder=dataclasses.replace(config.decoder, zero_init_input=True)))
    assert not model.decoder.patch_embed.weight.any()
    with torch.no_grad():  # the rest random (the zero-initialised head would hide everything)
        for name, p in model.decoder.named_parameters():
            if name != "patch_embed.weight":
                p.copy_(torch.randn(p.shape, generator=gen(7)) * 0.2)
    latents = model.encode_video(video)
    registers = model.decoder.embed_tokens(model.fsq(model.encoder(latents)).codes, keep=16)
    s = torch.full((2,), 0.7)
    x1, x2 = (torch.randn(latents.shape, generator=gen(i)) for i in (1, 2))
    torch.testing.assert_close(model.decoder(x1, s, registers).velocity, model.decoder(x2, s, registers).velocity)
    model.training_loss(latents, generator=gen()).backward()
    assert model.decoder.patch_embed.weight.grad.abs().sum() > 0


def test_embedding_init_std_reaches_positions_and_registers():
    config = VideoFlexTok.from_preset("flex-tiny").config
    wide = dataclasses.replace(
        config, encoder=dataclasses.replace(config.encoder, embedding_init_std=0.5),
        decoder=dataclasses.replace(config.decoder, embedding_init_std=0.3, register_positions=True))
    model = VideoFlexTok(wide)
    for p, std in ((model.encoder.registers, 0.5), (model.encoder.positions.table_h, 0.5),
                   (model.decoder.positions.table_t, 0.3), (model.decoder.register_index, 0.3),
                   (model.decoder.null_condition, 0.02)):
        assert abs(float(p.detach().std()) / std - 1) < 0.25
    assert abs(float(VideoFlexTok(config).encoder.registers.detach().std()) / 0.02 - 1) < 0.25  # the reference's default


def test_same_generator_same_output_and_different_seed_differs(tiny_model, video):
    ids = tiny_model.tokenize(video)
    a = tiny_model.detokenize(ids, generator=gen(1))
    b = tiny_model.detokenize(ids, generator=gen(1))
    c = tiny_model.detokenize(ids, generator=gen(2))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_save_load_round_trip_is_bit_identical(tiny_model, video, tmp_path):
    tiny_model.save_pretrained(tmp_path / "m")
    loaded = VideoFlexTok.from_pretrained(tmp_path / "m")
    assert loaded.config == tiny_model.config
    ids = tiny_model.tokenize(video)
    assert torch.equal(ids, loaded.tokenize(video))
    assert torch.equal(tiny_model.detokenize(ids, generator=gen()), loaded.detokenize(ids, generator=gen()))
    assert not list(tmp_path.joinpath("m").glob(".*tmp"))  # no temporary files left


def test_int8_checkpoint_is_a_quarter_and_loads_within_half_a_step(tiny_model, video, tmp_path):
    from safetensors.torch import load_file, save_file

    from videoflex.utils.int8 import COLUMN_SCALE_SUFFIX, SCALE_SUFFIX

    full = tiny_model.save_pretrained(tmp_path / "fp32") / "model.safetensors"
    small = tiny_model.save_pretrained(tmp_path / "int8", dtype=torch.int8) / "model.safetensors"
    assert small.stat().st_size < 0.4 * full.stat().st_size
    stored = load_file(str(small))
    assert stored["decoder.head.weight"].dtype == torch.int8 and stored["decoder.head.bias"].dtype == torch.float32
    loaded = VideoFlexTok.from_pretrained(small)
    for name, value in tiny_model.state_dict().items():
        error = (loaded.state_dict()[name] - value).abs()
        if value.dim() >= 2:  # int8 rows: at most half a step (the row's scale, times the column's if stored)
            step = stored[name + SCALE_SUFFIX][:, None] * stored.get(name + COLUMN_SCALE_SUFFIX, torch.ones(1))
            assert torch.all(error.reshape(value.shape[0], -1) <= step / 2 * 1.001 + 1e-12), name
        else:
            assert torch.equal(loaded.state_dict()[name], value), name
    ids = tiny_model.tokenize(video)
    a = tiny_model.detokenize(ids, generator=gen())
    b = loaded.detokenize(ids, generator=gen())
    assert (a - b).abs().mean() < 0.02
    stored.pop("decoder.head.weight" + SCALE_SUFFIX)
    save_file(stored, str(small), metadata={"format": "videoflex-tokenizer", "config": to_json(tiny_model.config)})
    with pytest.raises(ValueError, match="int8 tensors without a scale.*decoder.head.weight"):
        VideoFlexTok.from_pretrained(small)


def test_int8_scales_columns_of_unequal_size():
    """A matrix whose columns differ in size (a principal-component decoder's, scaled by each component's
    standard deviation) gets a scale per column too, and keeps its small columns' digits; any other matrix
    round-trips no worse than with row scales alone."""
    from videoflex.utils.int8 import COLUMN_SCALE_SUFFIX, SCALE_SUFFIX, dequantize_int8, quantize_int8

    basis = torch.linalg.qr(torch.randn(64, 32, generator=gen()))[0]
    decoder = basis * torch.logspace(0, -3, 32)  # [64, 32]: columns from 1 down to 0.001
    plain = torch.randn(48, 24, generator=gen(1))
    stored = quantize_int8({"decoder": decoder, "plain": plain})
    assert decoder.shape == stored["decoder"].shape and stored["decoder"].dtype == torch.int8
    assert stored["decoder" + COLUMN_SCALE_SUFFIX].shape == (32,)
    back = dequantize_int8(stored)
    column_error = (back["decoder"] - decoder).abs().amax(0) / decoder.abs().amax(0)
    assert float(column_error.max()) < 1 / 127  # every column within half a step of its own size (x2)
    rows_only = decoder.abs().amax(1, keepdim=True) / 127
    assert float((torch.round(decoder / rows_only) * rows_only - decoder)[:, -1].abs().amax()) > \
        10 * float((back["decoder"] - decoder)[:, -1].abs().amax())  # the smallest column kept its digits
    q = plain.abs().amax(1, keepdim=True) / 127
    assert (back["plain"] - plain).square().sum() <= (torch.round(plain / q) * q - plain).square().sum()
    bad = dict(stored)
    bad["decoder" + COLUMN_SCALE_SUFFIX] = torch.ones(31)
    with pytest.raises(ValueError, match="column scale 'decoder.int8_column_scale' \\(31,\\) does not fit"):
        dequantize_int8(bad)
    bad = {k: v for k, v in stored.items() if k != "decoder" + SCALE_SUFFIX}
    with pytest.raises(ValueError, match="without a scale"):
        dequantize_int8(bad)
    with pytest.raises(ValueError, match="reserved suffix"):
        quantize_int8({"x" + COLUMN_SCALE_SUFFIX: plain})


def test_loading_refuses_mismatched_weights(tiny_model, tmp_path):
    from safetensors.torch import load_file, save_file

    tiny_model.save_pretrained(tmp_path)
    file = tmp_path / "model.safetensors"
    from safetensors import safe_open

    with safe_open(str(file), "pt") as f:
        metadata = f.metadata()
    state = load_file(str(file))
    state.pop("decoder.null_condition")
    state["encoder.registers"] = state["encoder.registers"][:, :3].contiguous()
    state["extra.weight"] = torch.zeros(1)
    save_file(state, str(file), metadata=metadata)
    with pytest.raises(ValueError) as err:
        VideoFlexTok.from_pretrained(tmp_path)
    msg = str(err.value)
    assert "decoder.null_condition" in msg and "encoder.registers" in msg and "extra.weight" in msg


def test_loading_refuses_foreign_files(tmp_path):
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"not a safetensors file at all")
    with pytest.raises(ValueError, match="not a safetensors file"):
        VideoFlexTok.from_pretrained(bad)
    with pytest.raises(FileNotFoundError):
        VideoFlexTok.from_pretrained(tmp_path / "missing")


def test_conditioning_frames_are_reproduced(tiny_model, video):
    ids = tiny_model.tokenize(video)
    out = tiny_model.detokenize(ids, generator=gen(), conditioning_frames=video[:, :, :5])
    # the space-to-depth VAE is exact, so clean conditioning latents decode to the frames themselves
    torch.testing.assert_close(out[:, :, :5], video[:, :, :5])
    with pytest.raises(ValueError, match="latent steps"):
        tiny_model.detokenize(ids, conditioning_frames=video)


def test_long_video_chunks_are_conditioned_on_the_shared_frame(tiny_model):
    video = torch.rand(1, 3, 33, 32, 32, generator=gen()) * 2 - 1
    ids = tiny_model.tokenize(video)
    assert ids.shape[1] == 9
    # chunk 2's tokens do not change chunk 1's output
    ids2 = ids.clone()
    ids2[:, 5:] = torch.randint(0, 64000, ids2[:, 5:].shape, generator=gen(4))
    a = tiny_model.detokenize(ids, generator=gen())
    b = tiny_model.detokenize(ids2, generator=gen())
    assert torch.equal(a[:, :, :17], b[:, :, :17])
    assert not torch.equal(a[:, :, 17:], b[:, :, 17:])


def test_chunk_plans():
    plan = plan_chunks(40, 17, 1, 4)
    assert plan.padded_frames == 41
    assert [(c.start, c.frames, c.kept_steps) for c in plan.chunks] == [(0, 17, 5), (16, 17, 4), (32, 9, 2)]
    assert plan.token_steps == 11
    assert plan_from_steps(11, 17, 1, 4, 40) == plan
    for frames in range(1, 60):
        p = plan_chunks(frames, 17, 5, 4)  # a larger overlap (1 + 4 frames) works too
        assert p.padded_frames == 1 + 4 * (p.token_steps - 1) >= frames
    with pytest.raises(ValueError, match="num_frames"):
        plan_from_steps(3, 17, 1, 4, 20)


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: torch.rand(1, 4, 5, 32, 32), "3 \\(RGB\\) channels"),
        (lambda: torch.rand(1, 3, 5, 30, 32), "divisible by 8"),
        (lambda: torch.rand(1, 3, 5, 64, 64), "takes 32x32"),
        (lambda: torch.rand(3, 5, 32, 32), "shape \\[B, 3, T, H, W\\]"),
        (lambda: torch.randint(0, 255, (1, 3, 5, 32, 32)), "float"),
        (lambda: torch.rand(1, 3, 5, 32, 32) * 255, "\\[-1, 1\\]"),
    ],
)
def test_bad_videos_are_refused(tiny_model, make, match):
    with pytest.raises(ValueError, match=match):
        tiny_model.tokenize(make())


def test_bad_ids_and_keep_are_refused(tiny_model, video):
    ids = tiny_model.tokenize(video)
    for keep in (0, -1, 17, 2.5):
        with pytest.raises(ValueError, match="keep"):
            tiny_model.detokenize(ids, keep=keep)
    with pytest.raises(ValueError, match="integer"):
        tiny_model.detokenize(ids.float())
    with pytest.raises(ValueError, match="lie in \\[0, 64000\\)"):
        tiny_model.detokenize(ids + 64000)
    with pytest.raises(ValueError, match="lie in"):
        tiny_model.detokenize(ids - 100000)
    with pytest.raises(ValueError, match="only 4 tokens"):
        tiny_model.detokenize(ids[..., :4], keep=8)
    with pytest.raises(ValueError, match="shape"):
        tiny_model.detokenize(ids[0])


def test_training_loss_backpropagates_to_encoder_and_decoder(tiny_model, video):
    model = VideoFlexTok.from_preset("flex-tiny")
    latents = model.vae.encode(video)
    loss = model.training_loss(latents, generator=gen())
    loss.backward()
    assert torch.isfinite(loss)
    assert model.decoder.head.weight.grad.abs().sum() > 0
    # with zero-initialised heads the encoder gets gradient only after a step; use the random model
    tiny_model.zero_grad()
    tiny_model.training_loss(latents, generator=gen()).backward()
    assert tiny_model.encoder.blocks[0].attn.wq.weight.grad.abs().sum() > 0
    assert tiny_model.encoder.registers.grad.abs().sum() > 0
    tiny_model.zero_grad()


def test_training_loss_splits_over_the_batch(tiny_model, video):
    """Draws made for the whole batch give the same loss as the mean over its halves (DDP, accumulation)."""
    from videoflex.tokenizers.flex.model import draw_training

    config = dataclasses.replace(tiny_model.config.loss, prefix_prob=0.5)
    latents = torch.cat([tiny_model.vae.encode(video)] * 2)
    draws = draw_training(config, 16, tuple(latents.shape), gen(3))
    with torch.no_grad():
        whole = tiny_model.training_loss(latents, draws)
        halves = [tiny_model.training_loss(latents[i:i + 2], draws[i:i + 2]) for i in (0, 2)]
    torch.testing.assert_close(whole, sum(halves) / 2)


def linear_path_model(rank: int = 4) -> VideoFlexTok:
    config = VideoFlexTok.from_preset("flex-tiny").config
    config = dataclasses.replace(
        config, encoder=dataclasses.replace(config.encoder, linear_path=rank),
        decoder=dataclasses.replace(config.decoder, prediction="data", linear_path=rank))
    return randomize_(VideoFlexTok(config)).eval()


def test_linear_paths_keep_causality_and_the_prefix_property(video):
    model = linear_path_model()
    ids = model.tokenize(video)
    changed = video.clone()
    changed[:, :, 9:] = torch.rand(changed[:, :, 9:].shape, generator=gen(5)) * 2 - 1
    ids_changed = model.tokenize(changed)
    assert torch.equal(ids[:, :3], ids_changed[:, :3]) and not torch.equal(ids[:, 3:], ids_changed[:, 3:])
    keep = 3
    a = assert_prefix_decodes(model, ids, keep)
    # both paths take part: without them the tokens and the reconstruction change
    with torch.no_grad():
        model.encoder.linear_mix.weight.zero_()
        model.decoder.linear_out.weight.zero_()
    assert not torch.equal(model.tokenize(video), ids)
    assert not torch.equal(model.detokenize(ids, keep=keep, generator=gen()), a)


def test_linear_paths_are_checked(video):
    with pytest.raises(ValueError, match="prediction='data'"):
        config = VideoFlexTok.from_preset("flex-tiny").config
        dataclasses.replace(config.decoder, prediction="velocity", linear_path=4)
    with pytest.raises(ValueError, match="linear_path must be >= 0"):
        dataclasses.replace(VideoFlexTok.from_preset("flex-tiny").config.encoder, linear_path=-1)
    model = linear_path_model()
    latents = model.encode_video(video)
    with pytest.raises(ValueError, match="built for a"):  # the paths cover the grid of image_size only
        model.encode_latents(latents[..., :2, :2])
    model.training_loss(model.encode_video(video), generator=gen()).backward()
    assert model.encoder.linear_patch.weight.grad.abs().sum() > 0  # the encoder's path learns through the decoder's


# ------------------------------------------------------------------------------------ chunk micro-batches


@pytest.mark.parametrize("chunk_batch", [1, 2, 3])
def test_micro_batched_tokens_equal_the_one_batch_result(tiny_model, chunk_batch):
    """Issue 18, item 7: chunks go through the VAE and encoder chunk_batch at a time; the ids are those of
    one batch of every chunk (77 frames: four full chunks and a shorter padded one)."""
    video = torch.rand(2, 3, 77, 32, 32, generator=gen(3)) * 2 - 1
    one_batch = tiny_model.tokenize(video, chunk_batch=100)
    assert one_batch.shape == (2, 20, 16)
    assert torch.equal(tiny_model.tokenize(video, chunk_batch=chunk_batch), one_batch)


def test_micro_batches_bound_the_vae_batch(tiny_model, monkeypatch):
    """No VAE call sees more than chunk_batch chunks, whatever the video length."""
    seen = []
    encode = tiny_model.vae.encode
    monkeypatch.setattr(tiny_model.vae, "encode", lambda video, **kw: seen.append(video.shape[0]) or encode(video, **kw))
    video = torch.rand(1, 3, 161, 32, 32, generator=gen(4)) * 2 - 1  # 10 chunks
    tiny_model.tokenize(video, chunk_batch=3)
    assert seen == [3, 3, 3, 1]
    seen.clear()
    tiny_model.tokenize(video)  # the default
    assert max(seen) == 4 and sum(seen) == 10


def test_sampled_posterior_tokens_do_not_depend_on_chunk_batch():
    """With posterior sampling the VAE noise is drawn clip after clip, so micro-batches draw the numbers of
    the one-batch run (same generator seed, same ids)."""
    from videoflex.tokenizers.flex.presets import get_preset
    from videoflex.vae import VAEConfig

    config = dataclasses.replace(get_preset("flex-tiny"), sample_posterior=True,
                                 vae=VAEConfig(kind="vidtok", base_channels=8, latent_channels=4))
    model = randomize_(VideoFlexTok(config), std=0.1).eval()
    video = torch.rand(1, 3, 49, 32, 32, generator=gen(6)) * 2 - 1  # 3 chunks
    one_batch = model.tokenize(video, generator=gen(9), chunk_batch=100)
    assert torch.equal(model.tokenize(video, generator=gen(9), chunk_batch=1), one_batch)
    assert not torch.equal(model.tokenize(video, generator=gen(10), chunk_batch=1), one_batch)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "4"])
def test_bad_chunk_batch_is_refused(tiny_model, video, bad):
    with pytest.raises(ValueError, match="chunk_batch must be an integer >= 1"):
        tiny_model.tokenize(video, chunk_batch=bad)


# ------------------------------------------------------------------------------------ dtypes and devices


@pytest.mark.parametrize("preset,size,dtype,min_agreement", [
    ("flex-tiny", 32, torch.bfloat16, 0.70),  # measured 0.83 (random weights put codes near level edges)
    ("flex-tiny", 32, torch.float16, 0.93),  # measured 0.99
    ("flex-demo", 64, torch.bfloat16, 0.72),  # measured 0.85
])
def test_half_precision_model_takes_float32_input(preset, size, dtype, min_agreement):
    """Issue 18, item 6: a model moved to bfloat16/float16 takes a float32 video (it raised a RuntimeError in
    a linear layer); its tokens agree with float32 on most positions and decode to a finite float32 video.
    (float16 of flex-demo with every weight at std 0.2 overflows 65504 in the first decoder block: see the
    trained demo's test in test_demo_model.py.)"""
    from videoflex.data.sample_clips import sample_clip_path
    from videoflex.io import read_video

    model = randomize_(VideoFlexTok.from_preset(preset)).eval()
    video = read_video(sample_clip_path("bikes"), fps=8, size=size, max_frames=33).video[None]
    reference = model.tokenize(video)
    half = model.to(dtype)
    ids = half.tokenize(video)
    agreement = (ids == reference).float().mean().item()
    assert half.dtype == dtype and agreement >= min_agreement
    decoded = half.detokenize(ids, keep=8, generator=gen())
    assert decoded.dtype == torch.float32 and bool(torch.isfinite(decoded).all())
    conditioned = half.detokenize(ids[:, :5], generator=gen(), conditioning_frames=video[:, :, :5].double())
    assert bool(torch.isfinite(conditioned).all())
    assert torch.equal(half.tokenize(video.to(dtype)), ids)  # any float input dtype


def test_inputs_follow_the_model_and_a_foreign_generator_is_refused(tiny_model, video):
    """ids of any integer dtype are taken; a generator on another device type is refused with ValueError
    (not a RuntimeError inside torch.randn)."""
    ids = tiny_model.tokenize(video)
    out = tiny_model.detokenize(ids.to(torch.int32), keep=4, generator=gen())
    torch.testing.assert_close(out, tiny_model.detokenize(ids, keep=4, generator=gen()), rtol=0, atol=0)
    other = "cuda" if torch.cuda.is_available() else "meta"  # a stand-in where no accelerator exists
    foreign = torch.Generator(device=other) if other == "cuda" else SimpleNamespace(device=torch.device(other))
    with pytest.raises(ValueError, match=f"the generator is on {other}"):
        tiny_model.detokenize(ids, generator=foreign)
    with pytest.raises(ValueError, match=f"the generator is on {other}"):
        tiny_model.tokenize(video, generator=foreign)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cpu_inputs_follow_a_cuda_bfloat16_model(video):
    model = randomize_(VideoFlexTok.from_preset("flex-tiny")).eval()
    reference = model.tokenize(video)
    gpu = model.to("cuda", torch.bfloat16)
    ids = gpu.tokenize(video)  # float32 on the CPU
    assert ids.device.type == "cuda" and (ids.cpu() == reference).float().mean().item() >= 0.70
    out = gpu.detokenize(ids.cpu(), keep=4, generator=torch.Generator(device="cuda").manual_seed(0),
                         conditioning_frames=video[:, :, :5])
    assert out.dtype == torch.float32 and out.device.type == "cuda" and bool(torch.isfinite(out).all())
