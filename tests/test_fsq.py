import pytest
import torch

from videoflex.nn.fsq import FSQ


def test_all_codes_round_trip_exactly():
    fsq = FSQ((8, 8, 8, 5, 5, 5))
    ids = torch.arange(fsq.codebook_size)
    codes = fsq.ids_to_codes(ids)
    assert fsq.codebook_size == 64000
    assert torch.equal(fsq.codes_to_ids(codes), ids)
    # codes are distinct grid points in [-1, 1]
    assert codes.min() >= -1 and codes.max() <= 1
    assert torch.unique(codes, dim=0).shape[0] == 64000


def test_quantize_lands_on_the_grid_with_straight_through_gradient():
    fsq = FSQ((8, 5))
    z = (torch.randn(1000, 2) * 3).requires_grad_()
    out = fsq(z)
    codes, ids = out.codes, out.ids
    assert torch.equal(fsq.ids_to_codes(ids), codes.detach())
    assert set(torch.unique(codes[:, 0] * 4).tolist()) <= set(range(-4, 4))
    assert set(torch.unique(codes[:, 1] * 2).tolist()) <= set(range(-2, 3))
    codes.sum().backward()
    assert z.grad is not None and (z.grad.abs() > 0).any()


def test_every_level_value_is_reachable():
    fsq = FSQ((8, 8, 8, 5, 5, 5))
    z = torch.linspace(-6, 6, 2001)[:, None].expand(-1, 6)
    codes = fsq(z).codes
    for i, level in enumerate((8, 8, 8, 5, 5, 5)):
        assert torch.unique(codes[:, i]).numel() == level


def test_clip_bound_rounds_to_the_nearest_of_evenly_spaced_symmetric_levels():
    fsq = FSQ((8, 5), bound="clip")
    grids = [torch.linspace(-1, 1, 8), torch.linspace(-1, 1, 5)]  # symmetric; no level 0 for even L
    ids = torch.arange(fsq.codebook_size)
    codes = fsq.ids_to_codes(ids)
    assert torch.equal(fsq.codes_to_ids(codes), ids)
    for i in range(2):
        torch.testing.assert_close(torch.unique(codes[:, i]), grids[i])
    z = (torch.randn(2000, 2) * 0.8).requires_grad_()
    out = fsq(z)
    for i in range(2):  # the nearest level of the clipped value
        nearest = grids[i][(z.detach()[:, i].clamp(-1, 1)[:, None] - grids[i]).abs().argmin(1)]
        torch.testing.assert_close(out.codes.detach()[:, i], nearest)
    assert torch.equal(fsq.ids_to_codes(out.ids), out.codes.detach())
    out.codes.sum().backward()  # straight-through inside [-1, 1], zero outside
    inside = z.detach().abs() < 1
    assert torch.equal(z.grad != 0, inside)


def test_unknown_bound_is_refused():
    import pytest

    with pytest.raises(ValueError, match="bound"):
        FSQ((8, 5), bound="sigmoid")
    from videoflex.tokenizers.config import FSQConfig

    with pytest.raises(ValueError, match="bound"):
        FSQConfig(bound="round")


def test_residual_tokens_refine_their_source_at_finer_steps():
    """``residuals``: a residual token holds its source's rounding error at (L-1)x finer steps; a residual of a
    residual refines again; the other tokens are rounded as without residuals; ids round-trip the codes."""
    import pytest

    levels = (8, 8, 8, 5, 5, 5)
    plain, fsq = FSQ(levels, bound="clip"), FSQ(levels, bound="clip", residuals=((3, 2), (2, 0)))
    assert fsq.residuals == ((2, 0), (3, 2))  # applied in order of token
    z = torch.rand(64, 5, 6, generator=torch.Generator().manual_seed(0)) * 2.4 - 1.2  # some beyond [-1, 1]
    codes, gain = fsq.quantize(z), fsq.residual_gain()
    torch.testing.assert_close(gain, 1 / (torch.tensor(levels, dtype=torch.float32) - 1))
    expected = plain.quantize(z)
    for token in (0, 1, 4):
        assert torch.equal(codes[:, token], expected[:, token])
    half_step = 1 / (torch.tensor(levels, dtype=torch.float32) - 1)  # half a step, in code units
    target = z[:, 0].clamp(-1, 1)
    once = codes[:, 0] + codes[:, 2] * gain
    twice = once + codes[:, 3] * gain * gain
    assert bool(((target - codes[:, 0]).abs() <= half_step + 1e-6).all())
    assert bool(((target - once).abs() <= half_step * gain + 1e-6).all())
    assert bool(((target - twice).abs() <= half_step * gain * gain + 1e-6).all())
    assert float((target - twice).abs().max()) < float((target - codes[:, 0]).abs().max()) / 12
    assert torch.equal(fsq.ids_to_codes(fsq(z).ids), codes)
    # gradients pass (straight through) to the sources and to the residual tokens' inputs alike
    zg = z.clone().requires_grad_()
    fsq.quantize(zg).sum().backward()
    assert bool(torch.isfinite(zg.grad).all()) and float(zg.grad[:, 0].abs().sum()) > 0
    with pytest.raises(ValueError, match="need \\[..., N, d\\] inputs with N > 3, got \\[64, 3, 6\\]"):
        fsq.quantize(z[:, :3])
    with pytest.raises(ValueError, match="uniform bound"):
        FSQ(levels, residuals=((1, 0),))
    with pytest.raises(ValueError, match="0 <= source < token, got \\[\\[1, 1\\]\\]"):
        FSQ(levels, bound="clip", residuals=((1, 1),))
    with pytest.raises(ValueError, match="one source, got tokens \\[2, 2\\]"):
        FSQ(levels, bound="clip", residuals=((2, 0), (2, 1)))


# ------------------------------------------------------------------------------------ temporal prediction


def predicted_fsq(seed: int = 0) -> FSQ:
    """FSQ [8, 5] with temporal prediction over 4 tokens, token 3 refining token 0, gains and scales drawn."""
    fsq = FSQ((8, 5), bound="clip", residuals=((3, 0),), predicted_tokens=4)
    g = torch.Generator().manual_seed(seed)
    fsq.prediction_gain.copy_(torch.rand(4, 2, generator=g) * 0.5 + 0.5)
    fsq.prediction_scale.copy_(torch.rand(4, 2, generator=g) * 0.5 + 0.5)
    fsq.prediction_gain[3] = 0.0
    fsq.prediction_scale[3] = fsq.prediction_scale[0]
    return fsq


def random_walk(batch: int = 3, steps: int = 6, seed: int = 1) -> torch.Tensor:
    """``[B, t, 4, 2]`` inputs that change slowly from step to step (what prediction is for)."""
    g = torch.Generator().manual_seed(seed)
    start = torch.rand(batch, 1, 4, 2, generator=g) * 1.2 - 0.6
    return (start + torch.randn(batch, steps, 4, 2, generator=g).mul(0.05).cumsum(1)).clamp(-1, 1)


def test_temporal_prediction_codes_are_the_predicted_values_and_round_trip_through_ids():
    fsq = predicted_fsq()
    z = random_walk().requires_grad_()
    out = fsq(z)
    assert out.codes.shape == z.shape and out.ids.shape == z.shape[:-1]
    assert torch.equal(fsq.ids_to_codes(out.ids), out.codes.detach())
    assert torch.equal(fsq.codes_to_ids(out.codes.detach()), out.ids)
    # each step is the step before's value times the gain plus the scale times a level of the grid
    gain, scale = fsq.prediction_gain, fsq.prediction_scale
    steps = (out.codes[:, 1:] - gain * out.codes[:, :-1]) / scale
    levels = torch.stack([torch.linspace(-1, 1, 8), torch.cat([torch.linspace(-1, 1, 5), torch.zeros(3)])])
    for channel, count in enumerate((8, 5)):
        distance = (steps[:, :, :3, channel, None] - levels[channel, :count]).abs().amin(-1)
        assert float(distance.detach().max()) < 1e-5
    # straight through: the non-residual codes pass the gradient on as is (0 where the clip bound clips)
    out.codes[..., :3, :].sum().backward()
    grad = z.grad[..., 1:3, :]
    assert set(grad.unique().tolist()) <= {0.0, 1.0} and float((grad == 1).float().mean()) > 0.9
    # what changes slowly is rounded finer than plain FSQ rounds it
    plain = FSQ((8, 5), bound="clip", residuals=((3, 0),))
    z = z.detach()
    assert (out.codes[..., :3, :] - z[..., :3, :]).square().mean() < (plain(z).codes - z)[..., :3, :].square().mean()


def test_temporal_prediction_with_its_default_buffers_is_plain_fsq():
    fsq = FSQ((8, 5), bound="clip", residuals=((3, 0),), predicted_tokens=4)
    plain = FSQ((8, 5), bound="clip", residuals=((3, 0),))
    z = random_walk()
    assert torch.equal(fsq(z).ids, plain(z).ids) and torch.equal(fsq(z).codes, plain(z).codes)


def test_temporal_prediction_keeps_each_token_to_itself_and_restarts_at_the_first_step():
    fsq = predicted_fsq()
    z = random_walk()
    out = fsq(z)
    # a token's codes read only that token's inputs (and its source's, for a residual token): the prefix property
    changed = z.clone()
    changed[..., 1:, :] = -changed[..., 1:, :]
    assert torch.equal(fsq(changed).codes[..., 0, :], out.codes[..., 0, :])
    assert torch.equal(fsq(changed).codes[..., 3, :], out.codes[..., 3, :])
    # and only the steps up to its own: causality in time
    later = z.clone()
    later[:, 4:] = 0.9
    assert torch.equal(fsq(later).ids[:, :4], out.ids[:, :4])
    # first_step: the ids from it on decode alone, as the same steps quantised on their own
    first = torch.tensor([0, 2, 4])
    restarted = fsq(z, first)
    assert torch.equal(restarted.ids[0], out.ids[0])
    for b, f in enumerate(first.tolist()):
        assert torch.equal(restarted.ids[b, f:], fsq(z[b:b + 1, f:]).ids[0])
        placeholders = restarted.ids.clone()
        placeholders[b, :f] = 0
        assert torch.equal(fsq.ids_to_codes(placeholders, first)[b, f:], restarted.codes[b, f:])
    assert torch.equal(fsq.codes_to_ids(restarted.codes, first), restarted.ids)


def test_the_colour_token_is_not_predicted_from_its_first_value():
    """``colour_token``: its first step's value (the colour) does not predict the step after, which rounds its own
    value over the whole range (scale 1, gain 0); at the first step the residual token refining it rounds its own
    values (the coefficients the colour displaced) instead of the colour's rounding error; the other tokens are
    quantised as without it; the ids round trip, also with a first step per sample."""
    plain = predicted_fsq()  # token 3 refines token 0
    fsq = FSQ((8, 5), bound="clip", residuals=((3, 0),), predicted_tokens=4, colour_token=0)
    fsq.load_state_dict(plain.state_dict())  # the same gains and scales
    assert fsq.colour_refiner == 3
    z = random_walk()
    out, before = fsq(z), plain(z)
    grid = FSQ((8, 5), bound="clip")
    scale = fsq.prediction_scale[3]
    torch.testing.assert_close(out.codes[:, 0, 3], grid(z[:, 0, 3] / scale).codes * scale, rtol=0, atol=1e-6)
    assert torch.equal(out.codes[:, 1, 0], grid(z[:, 1, 0]).codes)
    assert torch.equal(out.codes[:, :, 1:3], before.codes[:, :, 1:3])
    assert torch.equal(out.codes[:, 0, :3], before.codes[:, 0, :3])
    assert torch.equal(fsq.ids_to_codes(out.ids), out.codes.detach())
    assert torch.equal(fsq.codes_to_ids(out.codes.detach()), out.ids)
    starts = torch.tensor([0, 2, 4])
    per_sample = fsq(z, starts)
    for b, f in enumerate(starts.tolist()):
        assert torch.equal(per_sample.ids[b, f:], fsq(z[b:b + 1, f:]).ids[0])
    assert torch.equal(fsq.ids_to_codes(per_sample.ids, starts), per_sample.codes.detach())
    assert torch.equal(fsq.codes_to_ids(per_sample.codes.detach(), starts), per_sample.ids)
    with pytest.raises(ValueError, match=r"colour_token needs temporal prediction and must lie in \[0, "):
        FSQ((8, 5), bound="clip", predicted_tokens=4, colour_token=4)


def test_full_range_restarts_round_a_first_step_over_the_whole_range():
    """``full_range_restarts``: a step predicted from nothing (the first, or each sample's ``first_step``) is
    plain FSQ of its inputs (scale 1), the later steps as without the option; the ids round trip."""
    plain = predicted_fsq()
    fsq = FSQ((8, 5), bound="clip", residuals=((3, 0),), predicted_tokens=4, full_range_restarts=True)
    fsq.load_state_dict(plain.state_dict())
    z = random_walk()
    starts = torch.tensor([0, 2, 4])
    out = fsq(z, starts)
    unpredicted = FSQ((8, 5), bound="clip", residuals=((3, 0),))
    for b, f in enumerate(starts.tolist()):
        assert torch.equal(out.codes[b, :f + 1], unpredicted(z[b, :f + 1]).codes)
    assert torch.equal(fsq.ids_to_codes(out.ids, starts), out.codes.detach())
    assert torch.equal(fsq.codes_to_ids(out.codes.detach(), starts), out.ids)
    # from the second step on, each step is the step before's value times the gain plus the scale times a level
    later = ((out.codes[0, 1:] - fsq.prediction_gain * out.codes[0, :-1]) / fsq.prediction_scale)[:, :3]
    torch.testing.assert_close(FSQ((8, 5), bound="clip")(later).codes, later, rtol=0, atol=1e-5)
    from videoflex.tokenizers.config import FSQConfig

    with pytest.raises(ValueError, match="full_range_restarts is an option of temporal prediction"):
        FSQConfig(bound="clip", full_range_restarts=True)


def test_temporal_prediction_refuses_what_it_cannot_read():
    fsq = predicted_fsq()
    with pytest.raises(ValueError, match=r"takes inputs shaped \[\.\.\., t, N, 2\] with N = 4"):
        fsq(torch.zeros(4, 2))  # no step axis
    with pytest.raises(ValueError, match="takes inputs shaped"):
        fsq(torch.zeros(2, 3, 5, 2))  # 5 tokens, not 4
    with pytest.raises(ValueError, match=r"takes ids shaped \[\.\.\., t, N\]"):
        fsq.ids_to_codes(torch.zeros(3, 5, dtype=torch.int64))
    with pytest.raises(ValueError, match="predicted_tokens must be 0"):
        FSQ((8, 5), bound="clip", residuals=((3, 0),), predicted_tokens=3)
    from videoflex.tokenizers.config import FSQConfig

    with pytest.raises(ValueError, match="temporal prediction needs the uniform bound"):
        FSQConfig(temporal_prediction=True)
