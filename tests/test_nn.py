"""Shared blocks: attention with a KV cache equals attention without one; RoPE encodes relative positions."""

from __future__ import annotations

import pytest
import torch

from videoflex.nn.attention import Attention, KVCache
from videoflex.nn.blocks import Block
from videoflex.nn.masks import dense_mask
from videoflex.nn.rope import apply_rope, rope_angles


def test_kv_cache_one_position_at_a_time_equals_the_whole_sequence():
    torch.manual_seed(0)
    block = Block(32, 8, 64, qk_norm=False).eval()
    b, s = 2, 7
    x = torch.randn(b, s, 32)
    positions = torch.arange(s)
    rope = rope_angles(positions, 8)
    whole = block(x, dense_mask("causal", 1, 0, s, x.device), rope)
    cache = KVCache(b, 4, s, 8)
    full_mask = dense_mask("causal", 1, 0, s, x.device)
    prefill = block(x[:, :3], full_mask[:3], rope[:3], cache, positions[:3])  # the first 3 at once
    steps = [block(x[:, i:i + 1], full_mask[i:i + 1], rope[i:i + 1], cache, positions[i:i + 1]) for i in range(3, s)]
    torch.testing.assert_close(torch.cat([prefill, *steps], dim=1), whole, atol=1e-5, rtol=1e-5)


def test_kv_cache_needs_positions():
    attention = Attention(16, 8)
    with pytest.raises(ValueError, match="positions"):
        attention(torch.randn(1, 2, 16), None, cache=KVCache(1, 2, 4, 8))


def test_rope_scores_depend_only_on_the_offset():
    torch.manual_seed(0)
    q, k = torch.randn(2, 16)
    angles = rope_angles(torch.arange(20), 16)

    def score(i: int, j: int) -> float:
        return float(apply_rope(q[None], angles[i:i + 1])[0] @ apply_rope(k[None], angles[j:j + 1])[0])

    assert score(3, 1) == pytest.approx(score(12, 10), rel=1e-4)
    assert score(3, 1) != pytest.approx(score(3, 2), rel=1e-3)
    torch.testing.assert_close(apply_rope(q[None], angles[:1]), q[None])  # position 0: no rotation
    with pytest.raises(ValueError, match="even"):
        rope_angles(torch.arange(3), 7)


def test_attention_width_must_split_into_heads():
    with pytest.raises(ValueError, match="multiple of head_dim"):
        Attention(30, 8)


@pytest.mark.parametrize("step_by_step_from", [1, None])  # every length step by step; the library's threshold
@pytest.mark.parametrize("steps,per_step", [(1, 5), (3, 4), (5, 7), (2, 64)])
def test_step_causal_attention_equals_the_dense_mask_with_gradients(steps, per_step, step_by_step_from, monkeypatch):
    """Attention step by step over the keys so far (StepCausal) is the dense time-block-causal attention."""
    from videoflex.nn import attention as attention_module
    from videoflex.nn.masks import StepCausal

    if step_by_step_from is not None:
        monkeypatch.setattr(attention_module, "STEP_BY_STEP_MIN_TOKENS", step_by_step_from)
    torch.manual_seed(0)
    attention = Attention(32, 8, qk_norm=True, scale=1.0)
    x = torch.randn(2, steps * per_step, 32, requires_grad=True)
    mask = StepCausal(steps, per_step)
    split = attention(x, mask)
    dense = attention(x, dense_mask("time_block_causal", steps, per_step, 0, x.device))
    torch.testing.assert_close(split, dense, atol=1e-5, rtol=1e-5)
    (g_split,) = torch.autograd.grad(split.square().sum(), x)
    (g_dense,) = torch.autograd.grad(dense.square().sum(), x)
    torch.testing.assert_close(g_split, g_dense, atol=1e-4, rtol=1e-4)
    if steps > 1:  # causal between steps: the last step's tokens do not move the first step's outputs
        changed = x.detach().clone()
        changed[:, -per_step:] += 1.0
        torch.testing.assert_close(attention(changed, mask)[:, :per_step], split[:, :per_step], atol=1e-6, rtol=0)


def test_step_causal_attention_refuses_a_mismatched_sequence():
    from videoflex.nn.attention import step_causal_attention
    from videoflex.nn.masks import StepCausal

    q = torch.randn(1, 2, 10, 8)
    with pytest.raises(ValueError, match="does not fit"):
        step_causal_attention(q, q, q, StepCausal(3, 4), None)
    with pytest.raises(ValueError, match="does not fit"):  # keys of a KV cache
        step_causal_attention(q[:, :, :4], q, q, StepCausal(1, 4), None)
    attention = Attention(16, 8)
    with pytest.raises(ValueError, match="does not fit"):
        attention(torch.randn(1, 128, 16), StepCausal(1, 64))
    with pytest.raises(ValueError, match="does not fit"):  # short steps (the dense path) too
        attention(torch.randn(1, 10, 16), StepCausal(3, 4))
    with pytest.raises(ValueError, match="does not fit 4 queries and 8 keys"):  # a KV cache's keys
        attention(torch.randn(1, 4, 16), StepCausal(1, 4), cache=KVCache(1, 2, 8, 8), positions=torch.arange(4))


def test_derived_weights_follow_their_parameters():
    """DerivedWeights (the joined qkv, the VAE's rearranged kernels) is remade when a parameter changes in
    place or is replaced, kept otherwise, and works for parameters made under inference_mode (no version
    counter: remade at every call)."""
    from videoflex.nn.fused import DerivedWeights

    calls = []

    def double(w: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return w * 2

    derived = DerivedWeights(double)
    w = torch.nn.Parameter(torch.ones(3))
    with torch.no_grad():
        assert torch.equal(derived(w), torch.full((3,), 2.0)) and derived(w) is derived(w)
        assert len(calls) == 1
        w.add_(1.0)  # in place: the version counter moves
        assert torch.equal(derived(w), torch.full((3,), 4.0))
        other = torch.nn.Parameter(torch.ones(3))  # replaced
        assert torch.equal(derived(other), torch.full((3,), 2.0))
    assert derived(w).requires_grad  # with autograd: made at every call, gradients reach w
    with torch.inference_mode():
        frozen = torch.nn.Parameter(torch.ones(3))
        assert frozen.is_inference()
        first = derived(frozen)
        frozen.mul_(3.0)  # no version counter to see this
        assert torch.equal(derived(frozen), first * 3)
