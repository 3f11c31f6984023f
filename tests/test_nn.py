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
