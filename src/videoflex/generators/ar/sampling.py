"""Sampling ids from an :class:`~videoflex.generators.ar.model.ARGenerator`: pure functions on logits and
:func:`generate`.

Logits ``[B, V]`` go through: classifier-free guidance (:func:`cfg_combine`, the scale possibly growing
linearly over the sequence: :func:`cfg_scale_at`), temperature, top-k, top-p, then one id per row is drawn by
inverting the cumulative distribution at a uniform number (:func:`sample_ids`). One uniform ``[B]`` is drawn
from the caller's generator for every sampled position, in order, so a seed gives the same ids with or without
the KV cache, and greedy decoding (temperature 0) consumes the same stream.

Long videos: a context window holds at most ``max_steps`` latent steps. Beyond that, :func:`generate` slides
the window over whole steps: the next window starts with the last ``context_steps`` steps already generated
(re-prefilled from scratch: their positions, step embeddings and RoPE restart at the window's start) and
samples the remaining ``max_steps - context_steps`` steps (fewer in the last window). In step-major order
the known steps are a prefix of the window; in rank-major order they are interleaved, and are fed in place
(forced) where they fall. The first window is exactly the generation of ``max_steps`` steps.

Text models: the prompt features go with every row (the null text in CFG's unconditional rows); the KV cache
holds their cross-attention keys and values for the whole generation, every window included.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from tqdm.auto import tqdm

from videoflex.generators.ar.model import ARCache, ARGenerator
from videoflex.generators.ar.orders import SequenceLayout
from videoflex.generators.text_encoder import TextFeatures


@dataclass(frozen=True)
class SamplingConfig:
    """How ids are drawn.

    temperature: logits are divided by it; 0 = greedy (argmax).
    top_k: keep the k most likely ids (0 = all).
    top_p: keep the smallest set of most likely ids whose probability reaches p (1 = all).
    cfg_scale: classifier-free guidance ``uncond + scale * (cond - uncond)``; 1 = the conditional logits
        (no unconditional rows are computed).
    cfg_schedule: ``"constant"``, or ``"linear"``: the scale grows from 1 to ``cfg_scale`` over the
        positions of a window (position j of L uses ``1 + (cfg_scale - 1) * (j + 1) / L``; the linear
        guidance of VAR, Tian et al. 2024, over scales).
    context_steps: steps of context a slid window starts with (None: ``max_steps - 1``, the most).
    """

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    cfg_scale: float = 1.0
    cfg_schedule: Literal["constant", "linear"] = "constant"
    context_steps: int | None = None

    def __post_init__(self) -> None:
        if not self.temperature >= 0:
            raise ValueError(f"SamplingConfig: temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"SamplingConfig: top_k must be >= 0 (0 = off), got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"SamplingConfig: top_p must be in (0, 1], got {self.top_p}")
        if not self.cfg_scale >= 0:
            raise ValueError(f"SamplingConfig: cfg_scale must be >= 0, got {self.cfg_scale}")
        if self.cfg_schedule not in ("constant", "linear"):
            raise ValueError(f"SamplingConfig: cfg_schedule must be 'constant' or 'linear', got {self.cfg_schedule!r}")
        if self.context_steps is not None and self.context_steps < 1:
            raise ValueError(f"SamplingConfig: context_steps must be >= 1, got {self.context_steps}")

    @property
    def guided(self) -> bool:
        """Whether unconditional logits are needed."""
        return self.cfg_scale != 1


# ---------------------------------------------------------------------------------------- logits


def cfg_combine(cond: torch.Tensor, uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """``uncond + scale * (cond - uncond)``, computed as ``scale * cond + (1 - scale) * uncond`` so that
    scale 1 returns ``cond`` and scale 0 ``uncond`` exactly. Shapes ``[..., V]``."""
    return scale * cond + (1 - scale) * uncond


def cfg_scale_at(config: SamplingConfig, index: int, length: int) -> float:
    """The guidance scale at position ``index`` of a window of ``length`` positions."""
    if config.cfg_schedule == "constant":
        return config.cfg_scale
    return 1 + (config.cfg_scale - 1) * (index + 1) / length


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """``logits [B, V]`` with every id below the k-th largest set to -inf (ties with it are kept); k=0: all."""
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """``logits [B, V]`` restricted to the smallest set of most likely ids whose probability reaches ``p``
    (nucleus sampling, Holtzman et al. 2020): an id is kept when the probability of the ids ranked before it
    is below ``p``; the most likely id is always kept. p=1: all."""
    if p >= 1:
        return logits
    probs, order = torch.sort(torch.softmax(logits.float(), dim=-1), dim=-1, descending=True)
    before = torch.cumsum(probs, dim=-1) - probs
    drop_sorted = before >= p
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def sample_ids(logits: torch.Tensor, config: SamplingConfig, uniform: torch.Tensor) -> torch.Tensor:
    """One id per row of ``logits [B, V]`` (after guidance) -> ``[B]`` int64.

    uniform: ``[B]`` numbers in [0, 1): the id drawn is the first whose cumulative probability exceeds
    ``uniform * total`` (inverse CDF; ids of probability zero are never drawn). Temperature 0: argmax.
    """
    logits = logits.float()
    if config.temperature == 0:
        return logits.argmax(dim=-1)
    logits = top_p_filter(top_k_filter(logits / config.temperature, config.top_k), config.top_p)
    cdf = torch.cumsum(torch.softmax(logits, dim=-1), dim=-1)
    threshold = (uniform.to(cdf.device, torch.float32) * cdf[:, -1]).unsqueeze(-1)
    return torch.searchsorted(cdf, threshold, right=True).squeeze(-1).clamp_max(logits.shape[-1] - 1)


# ---------------------------------------------------------------------------------------- generation


class _Stepper:
    """Runs the model on positions of one window, with a KV cache or by recomputing the prefix."""

    def __init__(self, model: ARGenerator, cond: torch.Tensor, layout: SequenceLayout, cache: ARCache | None,
                 text: TextFeatures | None):
        self.model, self.cond, self.layout, self.cache = model, cond, layout, cache
        self.text = text if cache is None or cache.cross is None else None  # else the cache holds it

    def logits(self, inputs: torch.Tensor, upto: int, start: int) -> torch.Tensor:
        """Logits ``[B, V]`` (float32) of position ``upto - 1``, having fed positions ``start .. upto-1``
        (cached: only those; uncached: all of ``0 .. upto-1``). ``inputs [B, L]``: the input id of each
        position."""
        first = start if self.cache is not None else 0
        positions = torch.arange(first, upto, device=inputs.device)
        h = self.model.hidden(inputs[:, first:upto], self.cond, positions, self.layout, self.cache, self.text)
        return self.model.head(h[:, -1]).float()


def _window(model: ARGenerator, cond: torch.Tensor, layout: SequenceLayout, known: torch.Tensor,
            known_steps: int, config: SamplingConfig, generator: torch.Generator | None, cache: ARCache | None,
            rows: int, progress: tqdm | None, text: TextFeatures | None) -> torch.Tensor:
    """Ids ``[rows, steps, k]`` of one window whose first ``known_steps`` steps are ``known [rows, steps', k]``
    (only the first known_steps are read). ``cond [rows]`` or ``[2 rows]`` (conditional then null rows), and
    ``text`` likewise (None for a model without text)."""
    step, _ = layout.coords(cond.device)
    forced = (step < known_steps).tolist()
    length = layout.length
    seq = torch.zeros(rows, length, dtype=torch.int64, device=cond.device)
    if known_steps:
        full = torch.zeros(rows, layout.steps, layout.k, dtype=torch.int64, device=cond.device)
        full[:, :known_steps] = known[:, :known_steps]
        seq = layout.to_sequence(full) * (step < known_steps)
    prefix = next((j for j, f in enumerate(forced) if not f), length)  # leading known positions
    inputs = torch.zeros(cond.shape[0], length, dtype=torch.int64, device=cond.device)
    reps = cond.shape[0] // rows

    def feed(j: int) -> None:  # id j is the input of position j + 1
        if j + 1 < length:
            inputs[:, j + 1] = seq[:, j].repeat(reps)

    for j in range(prefix):
        feed(j)
    stepper = _Stepper(model, cond, layout, cache, text)
    logits = stepper.logits(inputs, prefix + 1 if prefix < length else length, 0)
    for j in range(prefix, length):
        if not forced[j]:
            uniform = torch.rand(rows, generator=generator, device=generator.device if generator else "cpu")
            if reps == 2:
                logits = cfg_combine(logits[:rows], logits[rows:], cfg_scale_at(config, j, length))
            seq[:, j] = sample_ids(logits, config, uniform)
            if progress is not None:
                progress.update(1)
        feed(j)
        if j + 1 < length:
            logits = stepper.logits(inputs, j + 2, j + 1)
    return layout.to_ids(seq)


@torch.no_grad()
def generate(model: ARGenerator, labels: torch.Tensor | None, steps: int, budget_k: int | None = None,
             config: SamplingConfig | None = None, generator: torch.Generator | None = None,
             use_cache: bool = True, progress: bool = False, text: TextFeatures | None = None) -> torch.Tensor:
    """Sample ids ``[B, steps, budget_k]`` (int64, in ``[0, vocab_size)``) on the model's device.

    labels: ``[B]`` int64 classes (None for a model without classes; B = 1 then, or text's batch).
    steps: latent steps, any number >= 1 (beyond ``max_steps`` the window slides; see the module docstring).
    budget_k: ids per step, ``1 .. tokens_per_step`` (default: all). In rank-major order a smaller budget is
        a prefix of the full sequence; in step-major order it is its own layout, which a model serves only
        if it was trained on that budget.
    config: :class:`SamplingConfig` (default: temperature 1, no filtering, no guidance).
    generator: the random stream of the draws (one ``[B]`` uniform per sampled id); the same seed gives the
        same ids, with or without the cache.
    use_cache: a preallocated KV cache of every block (the longest window's length), prefilled once per
        window and extended one position at a time; without it the prefix is recomputed for every id.
    text: ``B`` rows of prompt features of the model's text encoder (required by a text model, refused by
        any other).
    CFG runs the conditional and unconditional (null class, null text) rows in one batch of ``2B``.
    Raises ``ValueError`` on bad arguments (the messages name the model).
    """
    c = model.config
    config = config or SamplingConfig()
    budget_k = c.tokens_per_step if budget_k is None else budget_k
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    model.layout(min(steps, c.max_steps), budget_k)  # checks budget_k
    context = c.max_steps - 1 if config.context_steps is None else config.context_steps
    if steps > c.max_steps and not 1 <= context < c.max_steps:
        raise ValueError(f"context_steps must be in [1, max_steps={c.max_steps}) to slide the window, got {context}")
    batch = labels.shape[0] if labels is not None else text.batch if text is not None else 1
    cond = model.check_labels(labels, batch)
    text = model.check_text(text, batch)
    if config.guided:
        if not c.num_classes and text is None:
            raise ValueError(f"{c.name} is unconditional: classifier-free guidance needs a class- or "
                             "text-conditional model")
        cond = torch.cat([cond, torch.full_like(cond, c.null_class)])
        if text is not None:
            text = TextFeatures.cat([text, model.null_text_features(batch, text.features.shape[1])])
    window_steps = min(steps, c.max_steps)
    cache = model.new_cache(cond.shape[0], window_steps * budget_k, text) if use_cache else None
    was_training = model.training
    model.eval()
    out = torch.zeros(batch, steps, budget_k, dtype=torch.int64, device=cond.device)
    bar = tqdm(total=steps * budget_k, unit="id", desc="sampling", disable=not progress) if progress else None
    try:
        done, known = 0, 0
        while done < steps:
            new = min(steps - done, c.max_steps - known)
            layout = model.layout(known + new, budget_k)
            ids = _window(model, cond, layout, out[:, done - known:done], known, config, generator, cache, batch, bar,
                          text)
            out[:, done:done + new] = ids[:, known:]
            done += new
            known = min(context, done)
    finally:
        model.train(was_training)
        if bar is not None:
            bar.close()
    return out
