"""Linear paths that read codes, started from principal components (videoflex.tokenizers.flex.pca)."""

import dataclasses
from itertools import pairwise

import pytest
import torch
import torch.nn.functional as F
from conftest import assert_prefix_decodes, randomize_

from videoflex import VideoFlexTok
from videoflex.nn.positions import unpatchify
from videoflex.tokenizers.flex.pca import fit_linear_paths
from videoflex.train.errors import RecipeError
from videoflex.train.tasks.tokenizer import TokenizerTask
from videoflex.train.tasks.tokenizer_config import load_train_config


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def code_path_model(rank: int = 8, temporal: bool = False) -> VideoFlexTok:
    config = VideoFlexTok.from_preset("flex-tiny").config
    config = dataclasses.replace(
        config, encoder=dataclasses.replace(config.encoder, linear_path=rank),
        decoder=dataclasses.replace(config.decoder, prediction="data", linear_path=rank, linear_input="codes",
                                    linear_temporal=temporal),
        sampler=dataclasses.replace(config.sampler, steps=1, guidance=1.0))
    torch.manual_seed(0)
    return VideoFlexTok(config).eval()


def smooth_clips(count: int, seed: int = 0) -> torch.Tensor:
    """uint8 ``[count,3,17,32,32]``: coarse random colour fields moving smoothly (a linear code's world)."""
    low = torch.rand(count, 3, 5, 4, 4, generator=gen(seed))
    return (F.interpolate(low, size=(17, 32, 32), mode="trilinear") * 255).round().to(torch.uint8)


@pytest.fixture(scope="module")
def fitted() -> tuple[VideoFlexTok, object]:
    model = code_path_model()
    fit = fit_linear_paths(model, smooth_clips(96), progress=False)
    return model, fit


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(4 / (a - b).square().mean()))


def test_the_fitted_model_starts_as_a_coarse_to_fine_linear_code(fitted):
    model, fit = fitted
    assert 0.5 < fit.patch_variance <= 1 and 0.5 < fit.step_variance <= 1
    assert list(fit.code_psnr_db) == [1, 2, 4, 8, 16]
    values = list(fit.code_psnr_db.values())
    assert all(b > a for a, b in pairwise(values))  # every doubling of k helps
    # on clips it never saw, the one-step reconstruction improves with every doubling too, and is the code's
    video = smooth_clips(4, seed=1).float() / 127.5 - 1
    ids = model.tokenize(video)
    scores = [psnr(model.detokenize(ids, keep=k, generator=gen()), video) for k in (1, 2, 4, 8, 16)]
    assert all(b > a for a, b in pairwise(scores)) and scores[-1] > 20
    codes = model.fsq.ids_to_codes(ids)
    linear = model.decoder.code_path(codes, 4)
    assert linear.shape == (4, 5, 16, 768)  # [B, t, L, C*p*p]: a 4x4 grid of 2x2 patches of 192 channels
    # the transformers add nothing yet: the reconstruction is the linear path's
    expected = model.vae.decode(unpatchify(linear, 2, (4, 4))).clamp(-1, 1)
    torch.testing.assert_close(model.detokenize(ids, keep=4, generator=gen()), expected, atol=1e-4, rtol=0)


def clip_model() -> VideoFlexTok:
    model = code_path_model()
    return VideoFlexTok(dataclasses.replace(model.config, fsq=dataclasses.replace(model.config.fsq, bound="clip")))


def test_with_a_uniform_quantiser_the_start_rounds_a_projection():
    """``FSQConfig.bound="clip"``: the fitted paths are an orthogonal projection onto the components (encode,
    decode, encode, decode gives the same values), and each coefficient is rounded to the nearest of its
    levels spread over +-CLIP_RANGE standard deviations."""
    from videoflex.tokenizers.flex.pca import CLIP_RANGE

    model = clip_model().eval()
    fit = fit_linear_paths(model, smooth_clips(96), progress=False)
    assert fit.kappa == (CLIP_RANGE,) * model.config.fsq.dim
    assert all(b > a for a, b in pairwise(fit.code_psnr_db.values()))
    latents = model.encode_video(smooth_clips(4, seed=1).float() / 127.5 - 1)
    n, grid = model.num_registers, model.decoder.grid
    with torch.no_grad():
        values = model.encoder(latents)  # [B,t,N,d] before rounding (the transformers add nothing yet)
        once = model.decoder.code_path(values, n)
        twice = model.decoder.code_path(model.encoder(unpatchify(once, 2, grid)), n)
    torch.testing.assert_close(twice, once, atol=1e-4, rtol=1e-4)
    codes = model.fsq(values).codes
    steps = 2 / (torch.tensor(model.config.fsq.levels, dtype=torch.float32) - 1)  # between adjacent levels
    assert bool(((codes - values.clamp(-1, 1)).abs() <= steps / 2 + 1e-6).all())
    assert bool((values.abs() < 1).float().mean() > 0.95)  # +-2.5 standard deviations hold nearly every value


def test_residual_tokens_refine_the_first_coefficients_of_the_code():
    """``FSQConfig.residuals`` with a fitted code: budgets below the first residual token rebuild what the code
    without residual tokens does; from it on, the refined rounding of the first tokens rebuilds clips better
    than the extra coefficients it displaces; any prefix decodes as the whole with the rest dropped."""
    from videoflex.tokenizers.config import FSQConfig

    def with_residuals(residuals):
        model = clip_model()
        config = dataclasses.replace(model.config, fsq=dataclasses.replace(model.config.fsq, residuals=residuals))
        return VideoFlexTok(config).eval()

    def lit_clips(count: int, seed: int) -> torch.Tensor:
        """Smooth clips with a strong colour cast each (as natural footage: the first components dominate)."""
        cast = torch.rand(count, 3, 1, 1, 1, generator=gen(seed + 100))
        return (smooth_clips(count, seed).float() * 0.3 + cast * 178).round().to(torch.uint8)

    clips, video = lit_clips(96, 0), lit_clips(4, 1).float() / 127.5 - 1
    models = {residuals: with_residuals(residuals) for residuals in ((), ((2, 0), (4, 1)))}
    fits = {key: fit_linear_paths(model, clips, progress=False) for key, model in models.items()}
    plain, refined = models[()], models[(2, 0), (4, 1)]
    assert [fits[()].code_psnr_db[k] for k in (1, 2)] == [fits[(2, 0), (4, 1)].code_psnr_db[k] for k in (1, 2)]
    with torch.no_grad():
        latents = plain.encode_video(video)
        a = plain.decoder.code_path(plain.fsq(plain.encoder(latents)).codes, 2)
        b = refined.decoder.code_path(refined.fsq(refined.encoder(latents)).codes, 2)
    torch.testing.assert_close(a, b)
    ids = {key: model.tokenize(video) for key, model in models.items()}
    scores = {key: [psnr(model.detokenize(ids[key], keep=k, generator=gen()), video) for k in (4, 8, 16)]
              for key, model in models.items()}
    assert all(r > p for p, r in zip(scores[()], scores[(2, 0), (4, 1)], strict=True)), scores
    assert_prefix_decodes(refined, ids[(2, 0), (4, 1)], 3)
    # the residual token's slot in the decoder's mix is its source's, scaled to the finer step
    dim, weight = refined.config.fsq.dim, refined.decoder.linear_mix.weight
    torch.testing.assert_close(weight[:, 2 * dim:3 * dim], weight[:, :dim] * refined.fsq.residual_gain())
    # a residual of a residual listed before its source: the same fit as the pairs in order of token
    chained, unordered = with_residuals(((2, 0), (5, 2))), with_residuals(((5, 2), (2, 0)))
    for model in (chained, unordered):
        fit_linear_paths(model, clips, progress=False)
    torch.testing.assert_close(unordered.decoder.linear_mix.weight, chained.decoder.linear_mix.weight, rtol=0, atol=0)
    torch.testing.assert_close(chained.decoder.linear_mix.weight[:, 5 * dim:6 * dim],
                               weight[:, :dim] * refined.fsq.residual_gain() ** 2)
    with pytest.raises(ValueError, match="residual tokens must be below num_registers=16"):
        dataclasses.replace(plain.config, fsq=FSQConfig(bound="clip", residuals=((16, 0),)))
    with pytest.raises(ValueError, match="FSQConfig: residual tokens need the uniform bound"):
        FSQConfig(residuals=((1, 0),))


def test_the_fit_is_deterministic():
    clips = smooth_clips(40)
    a, b = code_path_model(), code_path_model()
    fit_linear_paths(a, clips, progress=False)
    fit_linear_paths(b, clips, progress=False)
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(x, y), name


def test_code_paths_keep_causality_and_the_prefix_property():
    model = randomize_(code_path_model())
    video = smooth_clips(2, seed=3).float() / 127.5 - 1
    ids = model.tokenize(video)
    keep = 3
    a = assert_prefix_decodes(model, ids, keep)
    # the path takes part: without it the reconstruction changes
    with torch.no_grad():
        model.decoder.linear_out.weight.zero_()
    assert not torch.equal(model.detokenize(ids, keep=keep, generator=gen()), a)
    # dropped positions, prefix steps and null samples read code 0
    codes = model.fsq.ids_to_codes(ids)
    zeroed = codes.clone()
    zeroed[:, :, keep:] = 0
    zeroed[:, :1] = 0
    torch.testing.assert_close(model.decoder.code_path(codes, keep, prefix_steps=1),
                               model.decoder.code_path(zeroed, 16))
    null = model.decoder.code_path(codes, keep, null=torch.tensor([True, False]))
    torch.testing.assert_close(null[0], model.decoder.code_path(torch.zeros_like(codes), 16)[0])


def test_the_temporal_mix_is_fitted_and_takes_from_the_step_before():
    """``DecoderConfig.linear_temporal``: fitted by least squares, it rebuilds smoothly changing clips better than
    the code alone at every budget, on the fitted clips and on others; it starts at zero; it is causal (step t
    reads steps t-1 and t), and absent on the first step and after a prefix step."""
    clips = smooth_clips(96)
    plain, mixed = code_path_model(), code_path_model(temporal=True)
    assert not mixed.decoder.linear_temporal.weight.any()  # a new model starts without it
    fit_plain = fit_linear_paths(plain, clips, progress=False)
    fit_mixed = fit_linear_paths(mixed, clips, progress=False)
    for name, x in plain.state_dict().items():  # the same code; the mix is all that differs
        if ".linear" in name or name.startswith(("encoder.to_codes", "decoder.head.")):
            assert torch.equal(x, mixed.state_dict()[name]), name
    assert mixed.decoder.linear_temporal.weight.any()
    gains = [fit_mixed.code_psnr_db[k] - fit_plain.code_psnr_db[k] for k in fit_plain.code_psnr_db]
    assert min(gains) > 0, gains
    video = smooth_clips(4, seed=1).float() / 127.5 - 1
    ids = plain.tokenize(video)
    assert torch.equal(ids, mixed.tokenize(video))
    for k in (1, 4, 16):
        assert psnr(mixed.detokenize(ids, keep=k, generator=gen()), video) > \
            psnr(plain.detokenize(ids, keep=k, generator=gen()), video), k

    codes = mixed.fsq.ids_to_codes(ids)
    base, with_mix = plain.decoder.code_path(codes, 4), mixed.decoder.code_path(codes, 4)
    torch.testing.assert_close(with_mix[:, 0], base[:, 0])  # nothing before the first step
    assert not torch.allclose(with_mix[:, 1:], base[:, 1:])
    changed = codes.clone()
    changed[:, 2] = -changed[:, 2]
    after = mixed.decoder.code_path(changed, 4)
    torch.testing.assert_close(after[:, :2], with_mix[:, :2])  # causal
    assert not torch.allclose(after[:, 3], with_mix[:, 3])  # step 3 reads step 2
    prefixed = mixed.decoder.code_path(codes, 4, prefix_steps=1)
    torch.testing.assert_close(prefixed[:, 1], base[:, 1])  # a prefix step's codes are not read
    torch.testing.assert_close(prefixed[:, 2:], with_mix[:, 2:])
    randomize_(mixed)
    assert_prefix_decodes(mixed, ids, 3)


def test_with_residual_tokens_the_temporal_mix_is_fitted_on_the_budgets_before_them():
    """The blend is fitted over the budgets that read no residual token (k up to the first one): two models
    whose residual tokens differ only after that get the same blend, and it helps each of those budgets."""
    from videoflex.tokenizers.config import FSQConfig

    def model_with(residuals):
        config = code_path_model(temporal=True).config
        config = dataclasses.replace(config, fsq=FSQConfig(bound="clip", residuals=residuals))
        return VideoFlexTok(config).eval()

    clips = smooth_clips(64)
    first, second, unmixed = model_with(((8, 0),)), model_with(((8, 0), (12, 1))), model_with(((8, 0),))
    fits = [fit_linear_paths(model, clips, progress=False) for model in (first, second)]
    assert torch.equal(first.decoder.linear_temporal.weight, second.decoder.linear_temporal.weight)
    assert first.decoder.linear_temporal.weight.any()
    assert fits[0].code_psnr_db[16] != fits[1].code_psnr_db[16]  # the budgets past token 12 do differ
    unmixed.load_state_dict(first.state_dict())
    with torch.no_grad():
        unmixed.decoder.linear_temporal.weight.zero_()
    video = smooth_clips(4, seed=1).float() / 127.5 - 1
    ids = first.tokenize(video)
    for k in (1, 2, 4, 8):
        assert psnr(first.detokenize(ids, keep=k, generator=gen()), video) > \
            psnr(unmixed.detokenize(ids, keep=k, generator=gen()), video), k


def test_the_temporal_mix_needs_a_path_that_reads_codes():
    from videoflex.tokenizers.flex.config import DecoderConfig

    with pytest.raises(ValueError, match="linear_temporal mixes the steps of a linear path that reads codes"):
        DecoderConfig(width=64, depth=1, head_dim=32, prediction="data", linear_path=8, linear_temporal=True)


def test_guided_decoding_with_a_code_path_runs():
    model = code_path_model()
    model.config = dataclasses.replace(model.config, sampler=dataclasses.replace(model.config.sampler, steps=2,
                                                                                  guidance=2.0))
    video = smooth_clips(1).float() / 127.5 - 1
    out = model.detokenize(model.tokenize(video), keep=4, generator=gen())
    assert out.shape == video.shape and torch.isfinite(out).all()


def test_bad_input_is_refused():
    plain = VideoFlexTok.from_preset("flex-tiny")
    with pytest.raises(ValueError, match="reads codes"):
        fit_linear_paths(plain, smooth_clips(4), progress=False)
    model = code_path_model()
    with pytest.raises(ValueError, match="uint8"):
        fit_linear_paths(model, smooth_clips(4).float(), progress=False)
    with pytest.raises(ValueError, match="1 \\+ 4\\*m frames"):
        fit_linear_paths(model, smooth_clips(4)[:, :, :16], progress=False)
    video = smooth_clips(1).float() / 127.5 - 1
    latents = model.encode_video(video)
    codes = model.fsq(model.encoder(latents)).codes
    registers = model.decoder.embed_tokens(codes, 4)
    s = torch.ones(1)
    with pytest.raises(ValueError, match="reads FSQ codes: pass linear="):
        model.decoder(latents, s, registers)
    with pytest.raises(ValueError, match="takes no linear="):
        plain.decoder(latents, s, plain.decoder.embed_tokens(codes, 4), linear=torch.zeros(1))


def test_recipes_with_a_linear_code_are_checked(tmp_path):
    with pytest.raises(ValueError, match="in_memory"):
        load_train_config(None, ["model=flex-demo-256", "linear_code_clips=100"])
    with pytest.raises(ValueError, match=">= 2"):
        load_train_config(None, ["linear_code_clips=1"])
    config = load_train_config(None, ["model=flex-tiny", "linear_code_clips=100", "data.in_memory=true",
                                      "data.size=32", "data.frames=17", f"out_dir={tmp_path}",
                                      "data.train=[{kind: shapes, count: 4}]"])
    with pytest.raises(RecipeError, match="linear_code_clips=100: starts a flex preset"):
        TokenizerTask(config).check()


def predicted_model(prediction: bool = True) -> VideoFlexTok:
    """``clip_model`` with residual tokens 2, 4 (refining 0, 1) and, by default, temporal prediction."""
    model = clip_model()
    fsq = dataclasses.replace(model.config.fsq, residuals=((2, 0), (4, 1)), temporal_prediction=prediction)
    return VideoFlexTok(dataclasses.replace(model.config, fsq=fsq)).eval()


def test_temporal_prediction_is_fitted_with_the_code_and_rounds_only_what_changed():
    """``FSQConfig.temporal_prediction``: the fit sets a gain in [0, 1] and a scale in [PREDICTION_SCALE_MIN, 1]
    per token and channel (a residual token: gain 0, its source's scale); on slowly changing held-out clips
    the same code rebuilds them better with prediction than without at every budget; any prefix decodes alone;
    the ids round trip; a video of several chunks decodes its later chunks as well as its first."""
    from videoflex.tokenizers.flex.pca import PREDICTION_SCALE_MIN

    def slow_clips(count: int, seed: int) -> torch.Tensor:  # colour fields drifting over the whole clip
        low = torch.rand(count, 3, 2, 4, 4, generator=gen(seed))
        return (F.interpolate(low, size=(17, 32, 32), mode="trilinear") * 255).round().to(torch.uint8)

    clips, video = slow_clips(96, 0), slow_clips(4, 1).float() / 127.5 - 1
    models = {prediction: predicted_model(prediction) for prediction in (False, True)}
    for model in models.values():
        fit_linear_paths(model, clips, progress=False)
    plain, predicted = models[False], models[True]
    # the same principal components: only the rounding differs
    torch.testing.assert_close(predicted.encoder.linear_mix.weight, plain.encoder.linear_mix.weight, rtol=0, atol=0)
    gain, scale = predicted.fsq.prediction_gain, predicted.fsq.prediction_scale
    assert gain.shape == scale.shape == (16, 6)
    assert bool(((gain >= 0) & (gain <= 1)).all()) and float(gain[[0, 1, 3]].min()) > 0.5  # slow clips
    assert bool(((scale >= PREDICTION_SCALE_MIN) & (scale <= 1)).all())
    assert float(gain[[2, 4]].abs().max()) == 0.0
    torch.testing.assert_close(scale[[2, 4]], scale[[0, 1]], rtol=0, atol=0)
    ids = {key: model.tokenize(video) for key, model in models.items()}
    scores = {key: [psnr(model.detokenize(ids[key], keep=k, generator=gen()), video) for k in (1, 2, 4, 8, 16)]
              for key, model in models.items()}
    assert all(p > q for q, p in zip(scores[False], scores[True], strict=True)), scores
    assert_prefix_decodes(predicted, ids[True], 3)
    assert torch.equal(predicted.fsq.codes_to_ids(predicted.fsq.ids_to_codes(ids[True])), ids[True])
    # 33 frames: two chunks sharing a frame; the second chunk's ids start their prediction anew
    long = torch.cat([video, video.flip(2)[:, :, 1:]], dim=2)  # [4, 3, 33, 32, 32]
    long_ids = predicted.tokenize(long)
    assert torch.equal(predicted.tokenize(long, chunk_batch=1), long_ids)  # each chunk's restart, batched or not
    out = predicted.detokenize(long_ids, generator=gen())
    first, second = psnr(out[:, :, :17], long[:, :, :17]), psnr(out[:, :, 17:], long[:, :, 17:])
    assert second > first - 1.0, (first, second)


def colour_model(colour_token: int | None = 1) -> VideoFlexTok:
    """``predicted_model`` (residual tokens 2, 4 refining 0, 1; temporal prediction) with token 1 as the colour
    token (``None``: without)."""
    model = predicted_model()
    return VideoFlexTok(dataclasses.replace(model.config, colour_token=colour_token)).eval()


def chroma_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """RMS difference of the colour parts (each pixel minus its mean over R, G, B) of two videos."""
    return float(((a - a.mean(1, keepdim=True)) - (b - b.mean(1, keepdim=True))).square().mean().sqrt())


def test_the_colour_token_sends_a_chunks_colour_once_and_every_step_shows_it():
    """``TokenizerConfig.colour_token``: fitted, its colour components are orthonormal colour directions; the first
    step's colour token holds the colour codes and, where the token is kept, the decoder's linear path gives every
    step of the chunk those colour codes; without it (k = 1) nothing reads them; on held-out clips whose colours
    stay while their light moves, k = 2 shows their colours better than the same code without a colour token; the
    token's second step is not predicted from its first; the prefix property, causality and the ids' round trip
    hold, and each chunk of a long video carries its own colour."""
    def lit_clips(count: int, seed: int) -> torch.Tensor:  # faint fixed tints under bright moving light
        tint = F.interpolate(torch.rand(count, 3, 1, 2, 2, generator=gen(seed)), size=(17, 32, 32),
                             mode="trilinear")
        light = F.interpolate(torch.rand(count, 1, 5, 4, 4, generator=gen(seed + 1)), size=(17, 32, 32),
                              mode="trilinear")
        return ((0.8 + 0.4 * tint) * (0.1 + 0.7 * light) * 255).round().clamp(0, 255).to(torch.uint8)

    clips, video = lit_clips(96, 0), lit_clips(4, 10).float() / 127.5 - 1
    models = {token: colour_model(token) for token in (None, 1)}
    for model in models.values():
        fit_linear_paths(model, clips, progress=False)
    model = models[1]
    assert model.fsq.colour_refiner == 4 and model.colour_masked == ()  # token 4 refines token 1
    read, out = model.decoder.colour_read.weight, model.decoder.colour_out.weight  # [d, L*r], [L*r, d]
    torch.testing.assert_close(read @ out, torch.eye(6), atol=1e-4, rtol=0)
    ids = model.tokenize(video)
    codes = model.fsq.ids_to_codes(ids)

    def colour_coordinates(keep: int) -> torch.Tensor:  # [B,t,d]: each step's, as the linear path gives them
        linear = model.decoder.code_path(codes, keep)  # [B,t,L,P]
        reduced = (linear - model.decoder.linear_out.bias) @ model.decoder.linear_out.weight  # [B,t,L,r]
        return model.decoder.colour_read(reduced.flatten(2))

    # the first step shows the colour codes; the later steps move towards them by the fitted gain per budget,
    # all the way with gain 1
    gains = model.decoder.colour_gain.detach()
    assert bool(((gains >= 0) & (gains <= 1)).all()) and float(gains[1].mean()) > float(gains[15].mean())
    torch.testing.assert_close(colour_coordinates(2)[:, 0], codes[:, 0, 1], atol=1e-4, rtol=0)
    with torch.no_grad():
        model.decoder.colour_gain.fill_(1.0)
        colour = colour_coordinates(2)
        model.decoder.colour_gain.copy_(gains)
    torch.testing.assert_close(colour, codes[:, :1, 1].expand_as(colour), atol=1e-4, rtol=0)
    # the first step's colour token reaches the last step at k = 2, and nothing at k = 1
    changed = ids.clone()
    changed[:, 0, 1] = (changed[:, 0, 1] + 1000) % model.codebook_size
    for keep, differs in ((1, False), (2, True)):
        a, b = (model.detokenize(x, keep=keep, generator=gen())[:, :, -4:] for x in (ids, changed))
        assert torch.equal(a, b) != differs
    with_colour, without = (chroma_error(m.detokenize(m.tokenize(video), keep=2, generator=gen()), video)
                            for m in (model, models[None]))
    assert with_colour < 0.8 * without, (with_colour, without)
    # the token's second step is rounded over the whole range, not predicted from the colour; then predicted
    from videoflex.nn.fsq import FSQ

    grid = FSQ(model.config.fsq.levels, bound="clip")
    assert float(model.fsq.prediction_gain[1].min()) > 0
    assert torch.equal(codes[:, 1, 1], grid.ids_to_codes(ids[:, 1, 1]))
    assert not torch.equal(codes[:, 2, 1], grid.ids_to_codes(ids[:, 2, 1]))
    assert_prefix_decodes(model, ids, 3)
    assert torch.equal(model.fsq.codes_to_ids(codes), ids)
    later = video.clone()
    later[:, :, 9:] = 0.5
    assert torch.equal(model.tokenize(later)[:, :3], ids[:, :3])
    # two chunks sharing a frame: the second chunk's first token step holds its colour
    long = torch.cat([video, video.flip(0)[:, :, 1:]], dim=2)  # [4, 3, 33, 32, 32]: other colours later
    long_ids = model.tokenize(long)
    assert torch.equal(model.tokenize(long, chunk_batch=1), long_ids)
    decoded = model.detokenize(long_ids, keep=2, generator=gen())
    assert chroma_error(decoded[:, :, 17:], long[:, :, 17:]) < 1.2 * chroma_error(decoded[:, :, :17], long[:, :, :17])


def test_a_colour_token_needs_code_paths_and_a_token_of_its_own():
    config = colour_model(None).config
    for bad, match in ((16, r"colour_token must be a token index in \[0, 16\)"), (True, "colour_token must be"),
                       (2, "colour_token 2 is a residual token")):
        with pytest.raises(ValueError, match=match):
            dataclasses.replace(config, colour_token=bad)
    tiny = VideoFlexTok.from_preset("flex-tiny").config
    with pytest.raises(ValueError, match="colour_token needs both linear paths"):
        dataclasses.replace(tiny, colour_token=1)
    with pytest.raises(ValueError, match="colour_token needs fsq.temporal_prediction"):
        dataclasses.replace(config, colour_token=1, fsq=dataclasses.replace(config.fsq, temporal_prediction=False))


def test_a_colour_token_can_be_fitted_to_a_model_without_one():
    """``fit_colour_path`` on a model whose linear paths were fitted (or trained) without a colour token, as
    ``scripts/add_colour_token.py`` does for the shipped demo: every weight it had stays as it was, the colour
    path is fitted, and k = 2 shows the clips' colours better; a model without a colour token is refused."""
    from videoflex.tokenizers.flex.pca import fit_colour_path

    tint = F.interpolate(torch.rand(100, 3, 1, 2, 2, generator=gen(5)), size=(17, 32, 32), mode="trilinear")
    light = F.interpolate(torch.rand(100, 1, 5, 4, 4, generator=gen(6)), size=(17, 32, 32), mode="trilinear")
    clips = ((0.8 + 0.4 * tint) * (0.1 + 0.7 * light) * 255).round().clamp(0, 255).to(torch.uint8)
    before = colour_model(None)
    fit_linear_paths(before, clips[:96], progress=False)
    with pytest.raises(ValueError, match="has no colour token"):
        fit_colour_path(before, clips[:96], progress=False)
    after = colour_model(1)
    loaded = after.load_state_dict(before.state_dict(), strict=False)
    assert not loaded.unexpected_keys and all(".colour_" in key for key in loaded.missing_keys)
    fit_colour_path(after, clips[:96], progress=False)
    state = after.state_dict()
    assert all(torch.equal(state[key], value) for key, value in before.state_dict().items())
    video = clips[96:].float() / 127.5 - 1
    errors = [chroma_error(m.detokenize(m.tokenize(video), keep=2, generator=gen()), video) for m in (after, before)]
    assert errors[0] < 0.8 * errors[1], errors
