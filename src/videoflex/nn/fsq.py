"""Finite scalar quantisation (FSQ; Mentzer et al., 2023, arXiv 2309.15505): a bounded scalar per channel, rounded."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

BOUNDS = ("tanh", "clip")
"""What :meth:`FSQ.bound` can squash with: FSQ's tanh, or clipping (a uniform quantiser)."""


@dataclass(frozen=True)
class FSQOutput:
    """What :class:`FSQ` gives for ``[..., d]`` inputs."""

    codes: torch.Tensor  # [..., d] float32 on the grid, or the predicted values (temporal prediction); straight-through
    ids: torch.Tensor  # [...] int64 in [0, codebook_size)


def residual_problem(residuals: tuple[tuple[int, int], ...], bound: str) -> str | None:
    """Why ``residuals`` (pairs ``(token, source)``, see :class:`FSQ`) cannot be used, or ``None``."""
    if not residuals:
        return None
    if bound != "clip":
        return f"residual tokens need the uniform bound (bound='clip'), got bound={bound!r}"
    pairs = [tuple(pair) for pair in residuals]
    if any(len(pair) != 2 or not 0 <= pair[1] < pair[0] for pair in pairs):
        return f"residuals must be pairs (token, source) with 0 <= source < token, got {[list(p) for p in pairs]}"
    targets = [pair[0] for pair in pairs]
    if len(set(targets)) != len(targets):
        return f"each residual token may refine one source, got tokens {targets}"
    return None


class FSQ(nn.Module):
    """Quantises ``[..., d]`` vectors with ``levels[i]`` values on channel i; ids in ``[0, prod(levels))``.

    With ``bound="tanh"`` (FSQ's) codes lie on the grid ``(j - L//2) / (L//2)``, j in [0, L); with
    ``bound="clip"`` (a uniform quantiser of [-1, 1], :meth:`bound`) on ``(j - c) / c``, ``c = (L-1)/2``:
    ``L`` levels from -1 to 1, symmetric about 0. Ids are mixed-radix with the first
    channel varying fastest. Runs in float32 with autocast off; rounding uses a straight-through gradient.

    residuals: pairs ``(token, source)`` along axis -2 of the input (``[..., N, d]``; ``source < token``,
        each token at most once; ``bound="clip"`` only): token ``token`` ignores its own values and holds the
        rounding error of token ``source`` (in code units, ``clip(z) - code``, within half a step
        ``1/(L-1)``), scaled by ``L - 1`` to [-1, 1] and rounded again, so that ``code + residual / (L - 1)``
        gives the source's value at ``L - 1`` times finer steps (7x for 8 levels). Pairs apply in order of
        ``token``: a source may itself be a residual token (a second refinement). Residual quantisation in
        the manner of RVQ (Zeghidour et al., 2021), on FSQ's scalar channels; not in the paper (ours, for
        codes started from a linear code, :mod:`videoflex.tokenizers.flex.pca`).
    predicted_tokens: ``N > 0`` turns on temporal prediction for ``[..., t, N, d]`` inputs (latent steps on
        axis -3): closed-loop DPCM per token and channel, as in predictive video codecs. Step ``t`` rounds
        ``(z_t - a * y_{t-1}) / s`` (with the residual tokens as above) and its codes are the values
        ``y_t = a * y_{t-1} + s * rounded``, so that each step's codes stand on their own and any prefix of
        tokens decodes without the others (the prediction of a token reads that token's earlier values
        only). ``a`` (:attr:`prediction_gain`, in [0, 1]) and ``s`` (:attr:`prediction_scale`, in (0, 1])
        are ``[N, d]`` buffers fitted with the code (:func:`~videoflex.tokenizers.flex.pca.fit_linear_paths`);
        a residual token has ``a = 0`` and its source's ``s``. Their defaults (``a = 0``, ``s = 1``) are
        plain FSQ. The ids are those of the rounded values (what is new in each step). Not in the paper
        (ours, for codes started from a linear code, whose leading coefficients change slowly over time).
    colour_token: with temporal prediction, the colour token (``TokenizerConfig.colour_token``): at the first
        step it holds the chunk's colour, not its own coefficients, so the step after the first does not predict
        it from them (it starts from 0 and is rounded over the whole range), and at the first step the residual
        token refining it (:attr:`colour_refiner`, if any) holds the coefficients the colour displaced, rounded
        as that token's own, instead of the colour's rounding error. ``None``: none.
    full_range_restarts: with temporal prediction, a step predicted from nothing (the first step) is rounded
        over the whole range of its coefficients (scale 1) rather than at the prediction's scale, which is
        fitted for what changes from step to step and clips a first value beyond its range. ``False``: the
        prediction's scale (models made before this option).
    """

    def __init__(self, levels: tuple[int, ...], eps: float = 1e-3, bound: str = "tanh",
                 residuals: tuple[tuple[int, int], ...] = (), predicted_tokens: int = 0,
                 colour_token: int | None = None, full_range_restarts: bool = False) -> None:
        super().__init__()
        if bound not in BOUNDS:
            raise ValueError(f"FSQ: bound must be one of {BOUNDS}, got {bound!r}")
        problem = residual_problem(residuals, bound)
        if problem is not None:
            raise ValueError(f"FSQ: {problem}")
        self.residuals = tuple(sorted((int(t), int(s)) for t, s in residuals))
        self.level_counts = tuple(levels)
        self.eps = eps
        self.bound_kind = bound
        self.codebook_size = math.prod(levels)
        self.dim = len(levels)
        if predicted_tokens < 0 or (residuals and predicted_tokens and predicted_tokens <= self.residuals[-1][0]):
            raise ValueError(f"FSQ: predicted_tokens must be 0 (off) or a token count above every residual token, "
                             f"got {predicted_tokens}")
        self.predicted_tokens = predicted_tokens
        if colour_token is not None and not 0 <= colour_token < predicted_tokens:
            raise ValueError(f"FSQ: colour_token needs temporal prediction and must lie in [0, predicted_tokens="
                             f"{predicted_tokens}), got {colour_token}")
        self.colour_token, self.full_range_restarts = colour_token, full_range_restarts
        self.colour_refiner = next((t for t, source in self.residuals if source == colour_token), None)
        if predicted_tokens:
            self.register_buffer("prediction_gain", torch.zeros(predicted_tokens, self.dim))
            self.register_buffer("prediction_scale", torch.ones(predicted_tokens, self.dim))

    def _levels(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(levels, mixed-radix basis), both int64 ``[d]`` (built on the fly: nothing to load or move)."""
        levels = torch.tensor(self.level_counts, dtype=torch.int64, device=device)
        basis = torch.cumprod(torch.cat([torch.ones_like(levels[:1]), levels[:-1]]), dim=0)
        return levels, basis

    def _centre(self, levels: torch.Tensor) -> torch.Tensor:
        """The digit of code 0 per channel, also the codes' scale: ``L//2`` (tanh) or ``(L-1)/2`` (clip)."""
        return (levels // 2).float() if self.bound_kind == "tanh" else (levels - 1).float() / 2

    def bound(self, z: torch.Tensor) -> torch.Tensor:
        """Squash each channel before rounding: ``"tanh"`` into ``(-L/2, L/2)`` (shifted by 1/2 for even L);
        ``"clip"``: ``z`` clipped to [-1, 1] times ``(L-1)/2`` (zero gradient outside), so that rounding gives
        the nearest of ``L`` evenly spaced levels, symmetric about 0 (for even L, 0 lies between two)."""
        levels, _ = self._levels(z.device)
        if self.bound_kind == "clip":
            return z.clamp(-1.0, 1.0) * self._centre(levels)
        half = (levels.float() - 1) * (1 + self.eps) / 2
        offset = torch.where(levels % 2 == 0, 0.5, 0.0)
        shift = torch.atanh(offset / half)
        return torch.tanh(z + shift) * half - offset

    def quantize(self, z: torch.Tensor, first_step: int | torch.Tensor = 0) -> torch.Tensor:
        """Continuous ``[..., d]`` (``[..., N, d]`` with residuals, ``[..., t, N, d]`` with temporal prediction)
        -> codes of the same shape (straight-through gradient): on the grid, or with temporal prediction the
        predicted values (see :class:`FSQ`).

        first_step: with temporal prediction, the first step predicted from nothing (an int, or int64 ``[B]``
            per sample of ``[B, t, N, d]`` inputs): steps up to it are not predicted from the ones before, so
            that the ids from ``first_step`` on decode without the earlier ones (a chunk's steps shared with
            the chunk before). No effect without temporal prediction.
        Raises ValueError when a residual pair's token is not on axis -2 or, with temporal prediction, for
        inputs not shaped ``[..., t, predicted_tokens, d]``."""
        if not self.predicted_tokens:
            return self._quantize_step(z)
        self._check_predicted(z.shape, "inputs")
        with torch.autocast(device_type=z.device.type, enabled=False):
            values, previous = [], torch.zeros_like(z[..., 0, :, :], dtype=torch.float32)
            for t, step in enumerate(z.float().unbind(-3)):
                gain, scale = self._prediction(t, first_step, step)
                predicted = gain * previous.detach()
                first = None if self.colour_refiner is None else self._is_first(t, first_step, step)
                value = predicted + scale * self._quantize_step((step - predicted) / scale, first)
                values.append(value)
                previous = value
            return torch.stack(values, dim=-3)

    @staticmethod
    def _is_first(t: int, first_step: int | torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        """Bool: is step ``t`` the first step (of each sample), shaped to broadcast with a token's ``[..., d]`` of
        ``step [B?, ..., N, d]``."""
        first = torch.as_tensor(first_step, device=step.device) == t
        return first.reshape(-1, *([1] * (step.dim() - 2))) if step.dim() > 2 else first.reshape(())

    def _prediction(self, t: int, first_step: int | torch.Tensor, like: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Gain and scale of step ``t`` per token and channel, broadcasting with ``like [B?, ..., N, d]``: the
        fitted ones where step ``t`` is predicted from the step before (``t > first_step``; the
        :attr:`colour_token` not at ``t = first_step + 1``), else gain 0 and the fitted scale, or scale 1 with
        :attr:`full_range_restarts` (always for the colour token's second step, its coefficient's first value)."""
        start = torch.as_tensor(first_step, device=like.device).reshape(-1, 1)  # [B|1, 1]
        n = like.shape[-2]
        predicted = (t > start).expand(-1, n).clone()  # [B|1, N]
        full = torch.zeros_like(predicted)  # rounded over the whole range (scale 1)
        if self.colour_token is not None:
            full[:, self.colour_token] = t == start[:, 0] + 1
            predicted &= ~full
        if self.full_range_restarts:
            full = ~predicted
        shape = (n, 1) if like.dim() < 3 else (len(predicted), *([1] * (like.dim() - 3)), n, 1)
        predicted, full = predicted.reshape(shape), full.reshape(shape)
        return self.prediction_gain.float() * predicted, torch.where(full, 1.0, self.prediction_scale.float())

    def _check_predicted(self, shape: torch.Size, what: str) -> None:
        """With temporal prediction: ``ValueError`` unless ``shape`` is ``[..., t, N, d]`` (``what="ids"``:
        ``[..., t, N]``)."""
        tail = (self.predicted_tokens,) if what == "ids" else (self.predicted_tokens, self.dim)
        if len(shape) < len(tail) + 1 or tuple(shape[-len(tail):]) != tail:
            want = "[..., t, N]" if what == "ids" else f"[..., t, N, {self.dim}]"
            raise ValueError(f"FSQ with temporal prediction takes {what} shaped {want} with N = "
                             f"{self.predicted_tokens} (latent steps on the axis before the tokens); got {list(shape)}")

    def _quantize_step(self, z: torch.Tensor, first: torch.Tensor | None = None) -> torch.Tensor:
        """:meth:`quantize` without temporal prediction: ``[..., d]`` or ``[..., N, d]`` -> codes on the grid;
        ``first`` (bool, broadcasting to a token's ``[..., d]``): where the step is a first step, the
        :attr:`colour_refiner` rounds its own values."""
        with torch.autocast(device_type=z.device.type, enabled=False):
            codes = self._round(z.float())
            if not self.residuals:
                return codes
            if z.dim() < 2 or z.shape[-2] <= self.residuals[-1][0]:
                raise ValueError(f"FSQ: residual tokens up to {self.residuals[-1][0]} need [..., N, d] inputs with "
                                 f"N > {self.residuals[-1][0]}, got {list(z.shape)}")
            steps = self._levels(z.device)[0].float() - 1  # L - 1
            inputs, parts = list(z.float().unbind(-2)), list(codes.unbind(-2))
            for token, source in self.residuals:  # in order of token: a source is final when it is read
                error = (inputs[source].clamp(-1.0, 1.0) - parts[source].detach()) * steps
                inputs[token] = error if first is None or token != self.colour_refiner else \
                    torch.where(first, inputs[token], error)
                parts[token] = self._round(inputs[token])
            return torch.stack(parts, dim=-2)

    def _round(self, z: torch.Tensor) -> torch.Tensor:
        """Float32 ``[..., d]`` -> codes on the grid, each channel on its own (straight-through gradient)."""
        bounded = self.bound(z)
        centre = self._centre(self._levels(z.device)[0])
        if self.bound_kind == "clip":  # round the digit (bounded + centre), a half-integer grid for even L
            rounded = bounded + (torch.round(bounded + centre) - centre - bounded).detach()
        else:
            rounded = bounded + (torch.round(bounded) - bounded).detach()
        return rounded / centre

    def residual_gain(self, device: torch.device | None = None) -> torch.Tensor:
        """``[d]``: what a residual token's code is worth in its source's code units, ``1 / (L - 1)``."""
        return 1.0 / (self._levels(device or torch.device("cpu"))[0].float() - 1)

    def codes_to_ids(self, codes: torch.Tensor, first_step: int | torch.Tensor = 0) -> torch.Tensor:
        """Codes ``[..., d]`` (``[..., t, N, d]`` with temporal prediction; ``first_step`` as in
        :meth:`quantize`) -> int64 ids ``[...]``. Raises ValueError for codes of another shape with temporal
        prediction."""
        if self.predicted_tokens:
            self._check_predicted(codes.shape, "codes")
            values, steps = codes.float(), []
            for t, step in enumerate(values.unbind(-3)):
                gain, scale = self._prediction(t, first_step, step)
                steps.append((step - gain * values.select(-3, t - 1) if t else step) / scale)
            codes = torch.stack(steps, dim=-3)
        levels, basis = self._levels(codes.device)
        centre = self._centre(levels)
        digits = torch.round(codes.float() * centre + centre).long()
        return (digits * basis).sum(dim=-1)

    def ids_to_codes(self, ids: torch.Tensor, first_step: int | torch.Tensor = 0) -> torch.Tensor:
        """int64 ids ``[...]`` (``[..., t, N]`` with temporal prediction; ``first_step`` as in
        :meth:`quantize`) -> float32 codes ``[..., d]``. Raises ValueError for ids of another shape with
        temporal prediction."""
        if self.predicted_tokens:
            self._check_predicted(ids.shape, "ids")
        levels, basis = self._levels(ids.device)
        centre = self._centre(levels)
        digits = (ids[..., None] // basis) % levels
        codes = (digits.float() - centre) / centre
        if not self.predicted_tokens:
            return codes
        values, previous = [], torch.zeros_like(codes[..., 0, :, :])
        for t, step in enumerate(codes.unbind(-3)):
            gain, scale = self._prediction(t, first_step, step)
            previous = gain * previous + scale * step
            values.append(previous)
        return torch.stack(values, dim=-3)

    def forward(self, z: torch.Tensor, first_step: int | torch.Tensor = 0) -> FSQOutput:
        """``z [..., d]`` -> :class:`FSQOutput` (codes ``[..., d]``, ids ``[...]``); ``first_step`` as in
        :meth:`quantize`."""
        codes = self.quantize(z, first_step)
        return FSQOutput(codes, self.codes_to_ids(codes, first_step))
