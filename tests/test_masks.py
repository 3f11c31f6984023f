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
        else:  # encoder: [patches | registers]
            if tk < tq:
                out[q, k] = True
            elif tk == tq:
                k_patch, q_reg = ik < n_first, iq >= n_first
                out[q, k] = k_patch or (q_reg and ik <= iq)
    return out


@pytest.mark.parametrize("kind", ["time_block_causal_last", "time_block_causal"])
@pytest.mark.parametrize("steps,n_first,n_second", [(1, 3, 2), (3, 4, 5), (2, 1, 1)])
def test_masks_match_dense_reference(kind, steps, n_first, n_second):
    got = dense_mask(kind, steps, n_first, n_second, torch.device("cpu"))
    assert torch.equal(got, reference(kind, steps, n_first, n_second))


def test_full_mask_is_none_and_masks_are_cached():
    assert dense_mask("full", 2, 3, 4, torch.device("cpu")) is None
    a = dense_mask("time_block_causal", 2, 3, 4, torch.device("cpu"))
    assert a is dense_mask("time_block_causal", 2, 3, 4, torch.device("cpu"))
