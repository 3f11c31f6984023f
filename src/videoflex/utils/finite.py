"""Non-finite (NaN, infinite) model output: an error naming its likely cause, never a silent black video."""

from __future__ import annotations

import torch

MAX_NAMED = 3
"""Weight tensors named in the message (then a count of the others)."""


class NonFiniteOutputError(RuntimeError):
    """A model gave NaN or infinite values. ``bad_weights`` names the parameters and buffers that hold
    non-finite values (empty when the weights are all finite: the input or the precision is then the cause)."""

    def __init__(self, message: str, bad_weights: tuple[str, ...]) -> None:
        super().__init__(message)
        self.bad_weights = bad_weights


def non_finite_weights(module: torch.nn.Module) -> tuple[str, ...]:
    """Names of the floating-point parameters and buffers of ``module`` holding a NaN or an infinity."""
    named = [*module.named_parameters(), *module.named_buffers()]
    return tuple(name for name, t in named if t.is_floating_point() and not bool(torch.isfinite(t).all()))


def check_finite_output(output: torch.Tensor, what: str, module: torch.nn.Module) -> torch.Tensor:
    """Return ``output`` if all its values are finite; else raise :class:`NonFiniteOutputError` saying how many
    are NaN or infinite and the likely cause: the weights of ``module`` that are not finite (a damaged or
    diverged checkpoint), or, when they all are, overflow in the model's precision.

    ``what`` names the output in the message, e.g. ``"tokenize: the encoder's output"``.
    """
    finite = torch.isfinite(output)
    if bool(finite.all()):
        return output
    bad = int((~finite).sum())
    weights = non_finite_weights(module)
    if weights:
        named = ", ".join(weights[:MAX_NAMED]) + (f" and {len(weights) - MAX_NAMED} more" if len(weights) > MAX_NAMED else "")
        cause = (f"the model's weights hold NaN/inf values in {len(weights)} tensor{'s' if len(weights) > 1 else ''} "
                 f"({named}): a damaged or diverged checkpoint?")
    else:
        dtype = next((p.dtype for p in module.parameters()), output.dtype)
        cause = f"the weights are all finite: overflow in {str(dtype).removeprefix('torch.')}? (try float32)"
    raise NonFiniteOutputError(f"{what} is not finite ({bad} of {output.numel()} values are NaN or inf); {cause}",
                               weights)
