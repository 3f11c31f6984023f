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
