import itertools

import pytest
import torch

from videoflex.nn.masks import dense_mask


def reference(kind: str, steps: int, n_first: int, n_second: int) -> torch.Tensor:
    """Loop-by-loop reading of docs/design.md's mask definitions."""
    per = n_first + n_second
    out = torch.zeros(steps * per, steps * per, dtype=torch.bool)
    for q, k in itertools.product(range(steps * per), repeat=2):
        tq, iq = divmod(q, per)
        tk, ik = divmod(k, per)
        if kind == "time_block_causal":
            out[q, k] = tk <= tq
        elif kind == "causal":
            out[q, k] = k <= q
        elif kind == "prefix_lm":  # the condition: the first n_first positions of the first step
            out[q, k] = (tk == 0 and ik < n_first and steps == 1) or k <= q
        else:  # encoder: [patches | registers]
            if tk < tq:
                out[q, k] = True
            elif tk == tq:
                k_patch, q_reg = ik < n_first, iq >= n_first
                out[q, k] = k_patch or (q_reg and ik <= iq)
    return out


@pytest.mark.parametrize("kind", ["time_block_causal_last", "time_block_causal", "causal"])
@pytest.mark.parametrize("steps,n_first,n_second", [(1, 3, 2), (3, 4, 5), (2, 1, 1)])
def test_masks_match_dense_reference(kind, steps, n_first, n_second):
    got = dense_mask(kind, steps, n_first, n_second, torch.device("cpu"))
    assert torch.equal(got, reference(kind, steps, n_first, n_second))


@pytest.mark.parametrize("n_prefix,n_tokens", [(1, 4), (3, 5), (0, 3)])
def test_prefix_lm_sees_the_whole_condition_and_earlier_tokens(n_prefix, n_tokens):
    got = dense_mask("prefix_lm", 1, n_prefix, n_tokens, torch.device("cpu"))
    assert torch.equal(got, reference("prefix_lm", 1, n_prefix, n_tokens))
    if n_prefix > 1:  # the condition is bidirectional: its first position sees its last
        assert got[0, n_prefix - 1]
    assert not got[n_prefix, n_prefix + 1:].any()  # a token never sees a later one


def test_unknown_mask_is_refused():
    with pytest.raises(ValueError, match="unknown mask"):
        dense_mask("diagonal", 1, 2, 2, torch.device("cpu"))


def test_full_mask_is_none_and_masks_are_cached():
    assert dense_mask("full", 2, 3, 4, torch.device("cpu")) is None
    a = dense_mask("time_block_causal", 2, 3, 4, torch.device("cpu"))
    assert a is dense_mask("time_block_causal", 2, 3, 4, torch.device("cpu"))


def test_attention_mask_gives_time_block_causal_as_structure():
    from videoflex.nn.masks import StepCausal, attention_mask

    mask = attention_mask("time_block_causal", 3, 4, 5, torch.device("cpu"))
    assert mask == StepCausal(3, 9)
    assert torch.equal(mask.dense(), reference("time_block_causal", 3, 4, 5))
    for kind in ("time_block_causal_last", "causal"):
        got = attention_mask(kind, 2, 3, 4, torch.device("cpu"))
        assert torch.equal(got, dense_mask(kind, 2, 3, 4, torch.device("cpu")))
    assert attention_mask("full", 2, 3, 4, torch.device("cpu")) is None
    with pytest.raises(ValueError, match="unknown mask"):
        attention_mask("diagonal", 1, 2, 2, torch.device("cpu"))
