import pytest
import torch

from videoflex.nn.flow import FixedPrefix, SamplerConfig, flow_loss, guide, interpolate, nested_keep, sample


def plain(steps: int, method: str = "euler") -> SamplerConfig:
    return SamplerConfig(steps=steps, method=method, guidance=1.0)


@pytest.mark.parametrize("method", ["euler", "heun"])
def test_exact_velocity_reaches_x0(method):
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(2, 3, 2, 4, 4, generator=g)
    noise = torch.randn(x0.shape, generator=g)
    out = sample(lambda x, s: noise - x0, noise, plain(7, method))
    torch.testing.assert_close(out, x0, atol=1e-5, rtol=0)


def test_euler_follows_a_state_dependent_exact_field():
    # v(x, s) = (x - x0) / s is the exact velocity of the straight path through x; Euler stays on it.
    x0 = torch.randn(1, 2, 1, 3, 3)
    noise = torch.randn(x0.shape)
    out = sample(lambda x, s: (x - x0) / s.view(-1, 1, 1, 1, 1), noise, plain(5))
    torch.testing.assert_close(out, x0, atol=1e-5, rtol=0)


def test_apg_with_infinite_threshold_and_eta_one_equals_cfg():
    g = torch.Generator().manual_seed(0)
    v_c, v_u = torch.randn(2, 2, 4, 3, 5, 5, generator=g)
    cfg, _ = guide(SamplerConfig(guidance=7.5, guidance_method="cfg"), v_c, v_u, None)
    apg, _ = guide(SamplerConfig(guidance=7.5, apg_threshold=float("inf"), apg_eta=1.0), v_c, v_u, None)
    torch.testing.assert_close(apg, cfg)
    # a finite threshold and eta=0 change the result, and cap the update's norm per channel
    capped, _ = guide(SamplerConfig(guidance=7.5, apg_threshold=0.1, apg_eta=0.0), v_c, v_u, None)
    assert not torch.allclose(capped, cfg)
    update = (capped - v_c) / 6.5
    assert torch.linalg.vector_norm(update, dim=(2, 3, 4)).max() <= 0.1 + 1e-5


def test_guided_sampling_batches_cond_and_uncond_in_one_call():
    calls = []

    def velocity(x, s):
        calls.append(x.shape[0])
        return torch.cat([torch.ones_like(x[:1]), torch.zeros_like(x[1:])])

    sample(velocity, torch.zeros(1, 1, 1, 2, 2), SamplerConfig(steps=3, guidance=2.0, guidance_method="cfg"))
    assert calls == [2, 2, 2]


def test_fixed_prefix_is_kept_exactly():
    prefix = torch.randn(1, 2, 1, 3, 3)
    out = sample(lambda x, s: torch.ones_like(x), torch.zeros(1, 2, 3, 3, 3), plain(4), FixedPrefix(prefix))
    assert torch.equal(out[:, :, :1], prefix)
    torch.testing.assert_close(out[:, :, 1:], -torch.ones(1, 2, 2, 3, 3))


def test_sampler_settings_reject_bad_values():
    for bad, match in [({"method": "rk4"}, "euler"), ({"steps": 0}, "steps"), ({"guidance": -1.0}, "guidance"),
                       ({"guidance": float("nan")}, "guidance"), ({"guidance_method": "x"}, "cfg"),
                       ({"apg_threshold": 0.0}, "apg_threshold")]:
        with pytest.raises(ValueError, match=match):
            SamplerConfig(**bad)


def test_loss_ignores_masked_steps_and_is_zero_for_the_exact_target():
    x0, noise = torch.randn(2, 2, 1, 2, 4, 4)  # each [B=2, C=1, t=2, 4, 4]
    s = torch.tensor([0.3, 0.9])
    assert float(flow_loss(noise - x0, x0, noise)) == 0.0
    v = noise - x0
    v[:, :, 0] += 10.0  # wrong only on step 0
    weight = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    assert float(flow_loss(v, x0, noise, weight)) == 0.0
    assert float(flow_loss(v, x0, noise)) > 1.0
    xs = interpolate(x0, noise, s)
    torch.testing.assert_close(xs[1], 0.9 * noise[1] + 0.1 * x0[1])


def test_nested_keep_draws_powers_of_two():
    g = torch.Generator().manual_seed(0)
    keep = nested_keep(4000, 256, g)
    assert set(keep.tolist()) == {1, 2, 4, 8, 16, 32, 64, 128, 256}
    counts = torch.bincount(keep.log2().long())
    assert counts.min() > 4000 / 9 * 0.8  # uniform over the 9 budgets
    assert set(nested_keep(100, 24, g).tolist()) == {1, 2, 4, 8, 16, 24}
