"""Evaluation of a generator's videos against real clips of its dataset (``videoflex eval generator``).

For each condition (a class, or a prompt) N clips are sampled and decoded (:func:`generate_set`, seeded per
condition). They are compared with real clips through I3D (Kinetics-400 weights, ``videoflex.eval.i3d``):

- **gFVD**: the Frechet distance between the I3D logits ``[*, 400]`` of the generated and of the real clips, as
  ``videoflex eval fvd`` computes it (``videoflex.eval.fvd``); with fewer clips than 400 the covariances are
  rank-deficient and the value is biased upward: compare values at equal counts only.
- **class score** (class-conditional models): a linear probe (``videoflex.eval.class_probe``) on pooled I3D
  Mixed_5c features (1024-d) trained on the *real* clips and their labels (with ``probe_copies``, together with
  blurred and noised copies of them, :mod:`videoflex.eval.degrade`: a probe trained on clean clips alone scores
  blur and noise, not the class); the score is the mean probability it gives the requested class and its top-1
  accuracy (chance: 1 / number of classes). This is an offline stand-in for the paper's UMT-L classifier
  (docs/design.md, "Model families").
- **clip classifier** (optional): a small 3D CNN trained on the real clips at their own resolution
  (:mod:`videoflex.eval.clip_classifier`) scores the same way, with per-class Frechet distances in its own
  features; for small synthetic clips, whose I3D features follow sharpness and noise more than motion. For
  text models one is trained per attribute and gives a second attribute recovery.
- **class-shuffled control**: the same generated clips scored against a random derangement of their classes
  (:func:`derangement`): what a generator that ignores its class would get; its class score falls to chance and
  its per-class FVD rises.
- **attribute recovery** (text models on ``videoflex.data.shapes`` captions): one probe per attribute (shape,
  colour, motion) trained on the real clips' features and ground-truth factors; the accuracy with which each
  recovers the prompt's attribute from the generated clips, with its chance level (1 / number of values).
- **the tokenizer's view** (optional, ``recon``): the same probes trained instead on the real clips passed
  through the tokenizer (tokenized, decoded at the generator's budget). A generator can only make what its
  tokenizer decodes, so a weak tokenizer puts generated clips outside what a probe trained on sharp real clips
  knows; probes trained on reconstructions separate the generator's errors from the tokenizer's.
- **shape from silhouettes** (optional, text models on shapes, ``shape_clips``): neither the I3D probe nor the
  clip classifier reads a 32x32 shape reliably, and a tokenizer that draws shapes as blurred blobs leaves
  little of it; a :class:`~videoflex.eval.silhouette.SilhouetteClassifier` (foreground maps centred and
  scaled per frame) trained on the tokenizer's reconstructions of further real clips tells the shapes the
  tokenizer does draw apart (:func:`silhouette_shape_recovery`).

:func:`save_sample_grid` draws a PNG: one row per condition, a few frames of a few samples.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from videoflex.data.shapes import COLOURS, MOTIONS, SHAPES, ShapeFactors
from videoflex.eval.class_probe import LinearProbe, ProbeTrainConfig, train_probe
from videoflex.eval.clip_classifier import ClipClassifierConfig, train_clip_classifier
from videoflex.eval.degrade import degraded_copy
from videoflex.eval.fvd import FewSamplesWarning, fvd
from videoflex.eval.generated_clips import generate_clips
from videoflex.eval.i3d import I3D, i3d_embed
from videoflex.eval.silhouette import SilhouetteClassifierConfig, train_silhouette_classifier
from videoflex.generators.ar.model import ARGenerator
from videoflex.generators.ar.sampling import SamplingConfig
from videoflex.tokenizers.base import Tokenizer

ATTRIBUTES: tuple[str, ...] = ("shape", "colour", "motion")
"""The factors of a synthetic-shapes caption, in the order their probes are reported."""
ATTRIBUTE_VALUES: dict[str, tuple[str, ...]] = {"shape": SHAPES, "colour": tuple(COLOURS), "motion": tuple(MOTIONS)}


# ----------------------------------------------------------------------------- generating


@dataclass(frozen=True)
class Condition:
    """What one group of clips is generated for: a class id (``label``) or a ``prompt``, and a ``name`` for
    tables and the grid (the class name, or the prompt)."""

    name: str
    label: int | None = None
    prompt: str | None = None

    def __post_init__(self) -> None:
        if (self.label is None) == (self.prompt is None):
            raise ValueError(f"Condition {self.name!r}: give exactly one of label and prompt")


@dataclass(frozen=True)
class GeneratedSet:
    """Generated clips: ``video [N, 3, T, H, W]`` float32 in [-1, 1], ``ids [N, t, k]`` int64, ``condition [N]``
    int64 (index into ``conditions``), on the CPU; the clips of a condition are consecutive."""

    video: torch.Tensor
    ids: torch.Tensor
    condition: torch.Tensor
    conditions: tuple[Condition, ...]

    @property
    def labels(self) -> torch.Tensor:
        """Class ids ``[N]`` int64 of a class-conditional set (``ValueError`` for prompts)."""
        if any(c.label is None for c in self.conditions):
            raise ValueError("the clips were generated from prompts, not classes")
        return torch.tensor([self.conditions[i].label for i in self.condition.tolist()], dtype=torch.int64)


def generate_set(generator: ARGenerator, tokenizer: Tokenizer, conditions: Sequence[Condition], per_condition: int,
                 steps: int, budget_k: int, sampling: SamplingConfig, seed: int,
                 encode_text: Callable[[list[str]], object] | None = None, use_cache: bool = True,
                 progress: bool = False) -> GeneratedSet:
    """``per_condition`` clips of ``steps`` latent steps x ``budget_k`` ids for every condition, in one batch per
    condition; condition ``i`` is sampled and decoded with seed ``seed + i`` (so a condition's clips do not
    depend on the others). ``encode_text(prompts) -> TextFeatures`` encodes the prompts of a text model.

    Raises ``ValueError`` for no conditions, ``per_condition < 1``, a prompt without ``encode_text`` or what
    :func:`~videoflex.eval.generated_clips.generate_clips` refuses.
    """
    if not conditions or per_condition < 1:
        raise ValueError(f"need conditions and per_condition >= 1, got {len(conditions)} and {per_condition}")
    videos, ids, index = [], [], []
    for i, cond in enumerate(tqdm(conditions, desc="generating", unit="condition", disable=not progress)):
        labels, text = None, None
        if cond.label is not None:
            labels = torch.full((per_condition,), cond.label, dtype=torch.int64)
        else:
            if encode_text is None:
                raise ValueError(f"condition {cond.name!r} is a prompt: encode_text is needed")
            text = encode_text([cond.prompt] * per_condition)
        clips = generate_clips(generator, tokenizer, labels, steps, budget_k, sampling, seed + i, text, use_cache)
        videos.append(clips.video)
        ids.append(clips.ids)
        index.append(torch.full((per_condition,), i, dtype=torch.int64))
    return GeneratedSet(torch.cat(videos), torch.cat(ids), torch.cat(index), tuple(conditions))


# ----------------------------------------------------------------------------- class scores


@dataclass(frozen=True)
class ClassEntry:
    """The scores of the clips generated for one class: ``n`` clips, ``mean_prob`` (mean probability of the
    class), ``top1`` (fraction classified as it), ``fvd`` (their FVD to the real clips of that class; None with
    fewer than 2 of either)."""

    name: str
    label: int
    n: int
    mean_prob: float
    top1: float
    fvd: float | None


@dataclass(frozen=True)
class ClassScores:
    """Class score of generated clips under a probe trained on real clips.

    mean_prob: mean probability of the class each clip is scored against; top1: accuracy; chance: 1 / classes;
    class_fvd: mean over classes of the per-class FVD (None when no class has 2 clips in both sets);
    per_class: one :class:`ClassEntry` per class scored, by label.
    """

    mean_prob: float
    top1: float
    chance: float
    class_fvd: float | None
    per_class: tuple[ClassEntry, ...]


def _fvd_quiet(real: torch.Tensor, fake: torch.Tensor) -> float:
    with warnings.catch_warnings():  # few clips a class: the bias is documented in the module docstring
        warnings.simplefilter("ignore", FewSamplesWarning)
        return fvd(real, fake)


def score_classes(probs: torch.Tensor, labels: torch.Tensor, names: Sequence[str],
                  real_logits: torch.Tensor | None = None, real_labels: torch.Tensor | None = None,
                  fake_logits: torch.Tensor | None = None) -> ClassScores:
    """Scores of clips whose probe probabilities are ``probs [N, K]`` (rows sum to 1) against ``labels [N]``
    (int64 in ``[0, K)``); ``names``: the K class names. With ``real_logits [M, 400]``, ``real_labels [M]`` and
    ``fake_logits [N, 400]`` each class also gets the FVD between its generated and real clips.

    Raises ``ValueError`` for mismatched shapes or labels out of range."""
    n, k = probs.shape
    if labels.shape != (n,) or len(names) != k:
        raise ValueError(f"need probs [N, K], labels [N] and K names, got {tuple(probs.shape)}, "
                         f"{tuple(labels.shape)}, {len(names)} names")
    if n and (labels.min() < 0 or labels.max() >= k):
        raise ValueError(f"labels must be in [0, {k}), got [{int(labels.min())}, {int(labels.max())}]")
    intended = probs.gather(1, labels[:, None])[:, 0]
    correct = (probs.argmax(1) == labels).float()
    entries, fvds = [], []
    for c in sorted(set(labels.tolist())):
        mask = labels == c
        class_fvd = None
        if real_logits is not None and real_labels is not None and fake_logits is not None:
            real = real_logits[real_labels == c]
            if len(real) >= 2 and int(mask.sum()) >= 2:
                class_fvd = _fvd_quiet(real, fake_logits[mask])
                fvds.append(class_fvd)
        entries.append(ClassEntry(names[c], c, int(mask.sum()), float(intended[mask].mean()),
                                  float(correct[mask].mean()), class_fvd))
    return ClassScores(float(intended.mean()), float(correct.mean()), 1.0 / k,
                       sum(fvds) / len(fvds) if fvds else None, tuple(entries))


def derangement(n: int, seed: int) -> torch.Tensor:
    """A random permutation ``[n]`` (int64) with no fixed point (``perm[i] != i``), drawn from ``seed`` by
    rejection (about e = 2.72 draws on average). ``ValueError`` for ``n < 2``."""
    if n < 2:
        raise ValueError(f"a derangement needs at least 2 elements, got {n}")
    generator = torch.Generator().manual_seed(seed)
    while True:
        perm = torch.randperm(n, generator=generator)
        if not (perm == torch.arange(n)).any():
            return perm


def shuffled_labels(labels: torch.Tensor, seed: int) -> torch.Tensor:
    """``labels [N]`` with the classes that occur in them permuted by a :func:`derangement` (seeded): every clip
    is assigned a class other than its own, and each class keeps its count. ``ValueError`` for fewer than 2
    distinct classes."""
    classes = torch.unique(labels)
    perm = derangement(len(classes), seed)
    mapping = {int(c): int(classes[p]) for c, p in zip(classes, perm)}
    return torch.tensor([mapping[int(x)] for x in labels], dtype=torch.int64)


# ----------------------------------------------------------------------------- attributes (shapes)


def caption_factors(caption: str) -> ShapeFactors:
    """The shape, colour and motion a synthetic-shapes caption names (``"a red circle moving up and to the
    left"``; the inverse of :attr:`ShapeFactors.caption`). ``ValueError`` for any other text."""
    table = _caption_table()
    key = " ".join(caption.strip().lower().split())
    if key not in table:
        raise ValueError(f"{caption!r} is not a synthetic-shapes caption (e.g. {ShapeFactors('circle', 'red', 'up-left').caption!r})")
    return table[key]


def _caption_table() -> dict[str, ShapeFactors]:
    return {f.caption: f for f in (ShapeFactors(s, c, m) for s in SHAPES for c in COLOURS for m in MOTIONS)}


@dataclass(frozen=True)
class AttributeScore:
    """How well one attribute of the prompts is recovered from generated clips.

    attribute: ``"shape"``, ``"colour"`` or ``"motion"``; values: the values its probe tells apart (those of
    the real clips); accuracy: fraction of generated clips whose probe prediction is the prompt's value; chance:
    1 / len(values); real_top1: the probe's accuracy on the clips it was trained on (degraded copies
    included); n: generated clips.
    """

    attribute: str
    values: tuple[str, ...]
    accuracy: float
    chance: float
    real_top1: float
    n: int
    recon_top1: float | None = None
    """The probe's accuracy on the tokenizer's reconstructions of the real clips (when given): the most that
    clips decoded by this tokenizer can be expected to score."""


def _attribute_labels(attribute: str, real_factors: Sequence[ShapeFactors], fake_factors: Sequence[ShapeFactors],
                      real: str = "the real clips", fake: str = "prompts"
                      ) -> tuple[tuple[str, ...], torch.Tensor, torch.Tensor]:
    """The values of ``attribute`` the real clips show (in :data:`ATTRIBUTE_VALUES` order) and the int64 labels
    ``[M]`` of the real and ``[N]`` of the generated clips among them. ``ValueError`` when the real clips show
    fewer than 2 values or a prompt asks for one they do not show (``real``, ``fake``: what the message calls
    the two sets)."""
    seen = {getattr(f, attribute) for f in real_factors}
    values = tuple(v for v in ATTRIBUTE_VALUES[attribute] if v in seen)
    if len(values) < 2:
        raise ValueError(f"{real} show {len(values)} {attribute}(s): a probe needs at least 2")
    missing = sorted({getattr(f, attribute) for f in fake_factors} - seen)
    if missing:
        raise ValueError(f"{fake} ask for {attribute} {missing}, which none of {real} shows")
    return (values, torch.tensor([values.index(getattr(f, attribute)) for f in real_factors]),
            torch.tensor([values.index(getattr(f, attribute)) for f in fake_factors]))


def attribute_recovery(real_features: torch.Tensor, real_factors: Sequence[ShapeFactors],
                       fake_features: torch.Tensor, fake_factors: Sequence[ShapeFactors],
                       config: ProbeTrainConfig | None = None, progress: bool = False) -> tuple[AttributeScore, ...]:
    """One linear probe per attribute (:data:`ATTRIBUTES`) on the real clips' I3D features ``[M, D]`` and their
    ground-truth factors, applied to the generated clips' features ``[N, D]``; each is scored against the
    factors their prompts asked for.

    Raises ``ValueError`` for mismatched lengths, an attribute with one value in the real clips, or a prompt
    value that no real clip shows (the probe could not predict it)."""
    if len(real_factors) != real_features.shape[0] or len(fake_factors) != fake_features.shape[0]:
        raise ValueError(f"need one factor per clip: {real_features.shape[0]} real clips with {len(real_factors)}, "
                         f"{fake_features.shape[0]} generated with {len(fake_factors)}")
    scores = []
    for attribute in ATTRIBUTES:
        values, real_labels, fake_labels = _attribute_labels(attribute, real_factors, fake_factors)
        probe = train_probe(real_features, real_labels, values, config, progress=progress)
        with torch.no_grad():
            real_top1 = float((probe(real_features.float()).argmax(1) == real_labels).float().mean())
            accuracy = float((probe(fake_features.float()).argmax(1) == fake_labels).float().mean())
        scores.append(AttributeScore(attribute, values, accuracy, 1.0 / len(values), real_top1, len(fake_factors)))
    return tuple(scores)


def clip_attribute_recovery(real_video: torch.Tensor, real_factors: Sequence[ShapeFactors],
                            fake_video: torch.Tensor, fake_factors: Sequence[ShapeFactors],
                            config: ClipClassifierConfig | None = None,
                            recon: torch.Tensor | None = None, progress: bool = False) -> tuple[AttributeScore, ...]:
    """One :class:`~videoflex.eval.clip_classifier.ClipClassifier` per attribute (:data:`ATTRIBUTES`) trained on
    the real clips ``[M, 3, T, H, W]`` in [-1, 1] and their ground-truth factors, applied to the generated clips
    ``[N, 3, T, H, W]`` (``config``: the classifiers', default :class:`ClipClassifierConfig`'s); each is scored
    against the factors their prompts asked for (``real_top1``: its accuracy on the real clips; with ``recon``,
    the real clips' reconstructions by the tokenizer in the same order, ``recon_top1``: its accuracy on them).

    Raises ``ValueError`` as :func:`attribute_recovery`, and for ``recon`` of another shape than ``real_video``."""
    if len(real_factors) != len(real_video) or len(fake_factors) != len(fake_video):
        raise ValueError(f"need one factor per clip: {len(real_video)} real clips with {len(real_factors)}, "
                         f"{len(fake_video)} generated with {len(fake_factors)}")
    if recon is not None and recon.shape != real_video.shape:
        raise ValueError(f"recon must be the real clips' reconstructions {tuple(real_video.shape)}, got "
                         f"{tuple(recon.shape)}")
    scores = []
    for attribute in ATTRIBUTES:
        values, real_labels, fake_labels = _attribute_labels(attribute, real_factors, fake_factors)
        classifier = train_clip_classifier(real_video, real_labels, values, config or ClipClassifierConfig(),
                                           progress)
        scores.append(AttributeScore(
            attribute, values, classifier.accuracy(fake_video, fake_labels), 1.0 / len(values),
            classifier.accuracy(real_video, real_labels), len(fake_factors),
            classifier.accuracy(recon, real_labels) if recon is not None else None))
    return tuple(scores)


def silhouette_shape_recovery(train_video: torch.Tensor, train_factors: Sequence[ShapeFactors],
                              fake_video: torch.Tensor, fake_factors: Sequence[ShapeFactors],
                              heldout_video: torch.Tensor | None = None,
                              heldout_factors: Sequence[ShapeFactors] | None = None,
                              config: SilhouetteClassifierConfig | None = None,
                              progress: bool = False) -> AttributeScore:
    """Shape recovery by a :class:`~videoflex.eval.silhouette.SilhouetteClassifier` trained on ``train_video
    [M, 3, T, H, W]`` in [-1, 1] (meant: the tokenizer's reconstructions of real shapes clips) and their factors'
    shapes, applied to the generated clips ``[N, 3, T, H, W]`` and scored against the shapes their prompts asked
    for. ``real_top1``: its accuracy on its training clips; ``recon_top1``: on ``heldout_video`` (meant: the
    reconstructions of other real clips, e.g. those gFVD uses) with ``heldout_factors``, when given.

    Raises ``ValueError`` for a factor count that is not the clip count, fewer than 2 shapes among the training
    clips, or a prompt or held-out clip with a shape no training clip shows."""
    if len(train_factors) != len(train_video) or len(fake_factors) != len(fake_video) or \
            (heldout_video is None) != (heldout_factors is None) or \
            (heldout_video is not None and len(heldout_factors) != len(heldout_video)):
        raise ValueError("need one factor per clip (training, generated and held-out clips) and held-out factors "
                         "exactly with held-out clips")
    train = "the silhouette classifier's training clips"
    values, train_labels, fake_labels = _attribute_labels("shape", train_factors, fake_factors, train)
    classifier = train_silhouette_classifier(train_video, train_labels, values,
                                             config or SilhouetteClassifierConfig(), progress)
    heldout_top1 = None
    if heldout_video is not None:
        _, _, heldout_labels = _attribute_labels("shape", train_factors, heldout_factors, train, "held-out clips")
        heldout_top1 = classifier.accuracy(heldout_video, heldout_labels)
    return AttributeScore("shape", values, classifier.accuracy(fake_video, fake_labels), 1.0 / len(values),
                          classifier.accuracy(train_video, train_labels), len(fake_factors), heldout_top1)


# ----------------------------------------------------------------------------- the whole evaluation


@dataclass(frozen=True)
class RealClips:
    """Real clips of the dataset: ``video [M, 3, T, H, W]`` in [-1, 1]; ``labels [M]`` int64 (None when the
    clips have none); ``factors``: the synthetic-shapes ground truth of each clip (None for other data)."""

    video: torch.Tensor
    labels: torch.Tensor | None
    factors: tuple[ShapeFactors, ...] | None


@dataclass(frozen=True)
class GenerationScores:
    """What :func:`score_generations` measures (see the module docstring).

    gfvd: FVD of I3D logits, generated vs real; real_clips, generated_clips: the counts; classes: the class
    score (None for text models); shuffled: the class-shuffled control (None unless asked and >= 2 classes);
    probe_real_top1: the class probe's accuracy on the real clips it was trained on; attributes: the attribute
    recovery of a text model on shapes captions (empty otherwise); recon_*: the class score, the probe's
    accuracy on the real clips and the attribute recovery with probes trained on the tokenizer's
    reconstructions of the real clips instead (when asked; see the module docstring; recon_probe_real_top1 is
    that probe's accuracy on the reconstructions it was trained on); real_probe_recon_top1: the accuracy of the
    probe trained on the real clips on their reconstructions, the most generated clips decoded by this tokenizer
    can be expected to score under it. clip_*: the class score and its shuffled control under a small 3D CNN
    trained on the real clips at their resolution (:mod:`videoflex.eval.clip_classifier`; when asked; their
    ``class_fvd`` is the mean per-class Frechet distance in that CNN's pooled features, not I3D's), and its
    accuracy on the tokenizer's reconstructions of the real clips (with ``recon``); for prompts,
    clip_attributes: the attribute recovery of one such CNN per attribute (:func:`clip_attribute_recovery`).
    silhouette_shape: for prompts, with ``shape_clips``, the shape recovery of :func:`silhouette_shape_recovery`
    (its ``recon_top1``: on the reconstructions ``recon`` of the real clips, when given).
    """

    gfvd: float
    real_clips: int
    generated_clips: int
    classes: ClassScores | None
    shuffled: ClassScores | None
    probe_real_top1: float | None
    attributes: tuple[AttributeScore, ...]
    recon_classes: ClassScores | None = None
    recon_probe_real_top1: float | None = None
    recon_attributes: tuple[AttributeScore, ...] = ()
    real_probe_recon_top1: float | None = None
    clip_classes: ClassScores | None = None
    clip_shuffled: ClassScores | None = None
    clip_recon_top1: float | None = None
    clip_attributes: tuple[AttributeScore, ...] = ()
    silhouette_shape: AttributeScore | None = None


def score_generations(i3d: I3D, real: RealClips, generated: GeneratedSet, class_names: Sequence[str] = (),
                      shuffle_seed: int | None = None, probe: ProbeTrainConfig | None = None,
                      batch_size: int = 8, progress: bool = False,
                      recon: torch.Tensor | None = None, real_cache: Path | None = None,
                      probe_copies: int = 0, probe_seed: int = 0,
                      clip_classifier: ClipClassifierConfig | None = None,
                      shape_clips: RealClips | None = None) -> GenerationScores:
    """Embed both sets with ``i3d`` (clips of at least 16 frames) and compute gFVD, the class score (class
    conditions; ``class_names``: the generator's K names, default ``"0" .. "K-1"``) with the class-shuffled
    control when ``shuffle_seed`` is given, and the attribute recovery (prompt conditions; needs
    ``real.factors``). ``recon``: the real clips' reconstructions by the tokenizer (``[M, 3, T, H, W]``, the
    same clips in the same order): probes trained on them give the ``recon_*`` scores too. ``real_cache``: a
    folder where the real clips' I3D embeddings are stored and found again (``i3d_embed``'s ``cache``).
    ``probe_copies``: degraded copies of the real clips (:func:`videoflex.eval.degrade.degraded_copy`, copy ``c``
    drawn from seed ``probe_seed * 1000 + c``) added, with the same labels and factors, to the training set of
    every probe trained on real clips (see the module docstring); gFVD and the reported real-clip accuracies use
    the real clips alone. ``clip_classifier``: also train a :class:`~videoflex.eval.clip_classifier.ClipClassifier`
    of that config on the real clips and their labels and score the generated clips with it (class conditions),
    or one per attribute (prompt conditions, :func:`clip_attribute_recovery`). ``shape_clips``: prompt
    conditions only: the tokenizer's reconstructions of further real shapes clips (``factors`` set, ``video``
    ``[M2, 3, T, H, W]``) on which to train the silhouette classifier of :func:`silhouette_shape_recovery`.

    Raises ``ValueError`` for fewer than 2 clips in a set, class conditions without real labels, real labels
    outside the generator's classes, prompts that are not shapes captions, real clips without factors for
    prompts, or ``shape_clips`` with class conditions or without factors.
    """
    for what, n in (("real", real.video.shape[0]), ("generated", generated.video.shape[0])):
        if n < 2:
            raise ValueError(f"{n} {what} clip(s): FVD needs at least 2")
    if probe_copies < 0:
        raise ValueError(f"probe_copies must be >= 0, got {probe_copies}")
    real_out = i3d_embed(i3d, real.video, batch_size, progress, cache=real_cache)
    fake_out = i3d_embed(i3d, generated.video, batch_size, progress)
    copies = [i3d_embed(i3d, degraded_copy(real.video, probe_seed * 1000 + c), batch_size, progress,
                        cache=real_cache).features for c in range(1, probe_copies + 1)]
    probe_features = torch.cat([real_out.features, *copies]) if copies else real_out.features
    repeats = 1 + probe_copies
    gfvd = fvd(real_out.logits, fake_out.logits)
    classes = shuffled = probe_top1 = clip = clip_shuffled = clip_ceiling = None
    attributes: tuple[AttributeScore, ...] = ()
    clip_attributes: tuple[AttributeScore, ...] = ()
    recon_scores: tuple[ClassScores | None, float | None, tuple[AttributeScore, ...], float | None] = (
        None, None, (), None)
    if recon is not None and recon.shape != real.video.shape:
        raise ValueError(f"recon must be the real clips' reconstructions {tuple(real.video.shape)}, got "
                         f"{tuple(recon.shape)}")
    recon_features = i3d_embed(i3d, recon, batch_size, progress).features if recon is not None else None
    silhouette = None
    if all(c.label is not None for c in generated.conditions):
        if shape_clips is not None:
            raise ValueError("shape_clips: the silhouette shape score is for prompts (shapes captions)")
        if real.labels is None:
            raise ValueError("the real clips have no labels: the class score needs labelled real clips")
        k = max(len(class_names), int(real.labels.max()) + 1, int(generated.labels.max()) + 1)
        names = tuple(class_names) or tuple(str(i) for i in range(k))
        if len(names) < k:
            raise ValueError(f"the real clips have labels up to {int(real.labels.max())}; the generator has "
                             f"{len(names)} classes")
        labels = generated.labels

        def class_scores(train_features: torch.Tensor, reported: torch.Tensor
                         ) -> tuple[ClassScores, float, torch.Tensor, LinearProbe]:
            train_labels = real.labels.repeat(len(train_features) // len(real.labels))
            model = train_probe(train_features, train_labels, names, probe, progress=progress)
            with torch.no_grad():
                probs = model(fake_out.features.float()).softmax(-1)
                top1 = float((model(reported.float()).argmax(1) == real.labels).float().mean())
            scores = score_classes(probs, labels, names, real_out.logits, real.labels, fake_out.logits)
            return scores, top1, probs, model

        classes, probe_top1, probs, real_probe = class_scores(probe_features, real_out.features)
        if shuffle_seed is not None and len(torch.unique(labels)) >= 2:
            shuffled = score_classes(probs, shuffled_labels(labels, shuffle_seed), names, real_out.logits,
                                     real.labels, fake_out.logits)
        if recon_features is not None:
            recon_classes, recon_top1, _, _ = class_scores(recon_features, recon_features)
            with torch.no_grad():
                ceiling = float((real_probe(recon_features.float()).argmax(1) == real.labels).float().mean())
            recon_scores = (recon_classes, recon_top1, (), ceiling)
        if clip_classifier is not None:
            classifier = train_clip_classifier(real.video, real.labels, names, clip_classifier, progress)
            # per-class Frechet distances in the classifier's own feature space, where the classes differ
            real_embed, fake_embed = classifier.embed(real.video), classifier.embed(generated.video)
            clip_probs = classifier.classify(fake_embed)
            clip = score_classes(clip_probs, labels, names, real_embed, real.labels, fake_embed)
            if shuffle_seed is not None and len(torch.unique(labels)) >= 2:
                clip_shuffled = score_classes(clip_probs, shuffled_labels(labels, shuffle_seed), names,
                                              real_embed, real.labels, fake_embed)
            if recon is not None:
                clip_ceiling = classifier.accuracy(recon, real.labels)
    else:
        if real.factors is None:
            raise ValueError("the real clips carry no shape, colour and motion: attribute recovery needs "
                             "synthetic shapes clips")
        prompts = [generated.conditions[i].prompt or "" for i in generated.condition.tolist()]
        fake_factors = [caption_factors(p) for p in prompts]
        attributes = attribute_recovery(probe_features, real.factors * repeats, fake_out.features, fake_factors,
                                        probe, progress)
        if clip_classifier is not None:
            clip_attributes = clip_attribute_recovery(real.video, real.factors, generated.video, fake_factors,
                                                      clip_classifier, recon, progress)
        if recon_features is not None:
            recon_scores = (None, None, attribute_recovery(recon_features, real.factors, fake_out.features,
                                                           fake_factors, probe, progress), None)
        if shape_clips is not None:
            if shape_clips.factors is None:
                raise ValueError("shape_clips carry no shapes factors: the silhouette classifier needs them")
            silhouette = silhouette_shape_recovery(
                shape_clips.video, shape_clips.factors, generated.video, fake_factors, recon,
                real.factors if recon is not None else None, progress=progress)
    return GenerationScores(gfvd, real.video.shape[0], generated.video.shape[0], classes, shuffled, probe_top1,
                            attributes, *recon_scores, clip, clip_shuffled, clip_ceiling, clip_attributes,
                            silhouette)


# ----------------------------------------------------------------------------- the grid


def grid_frames(num_frames: int, count: int) -> list[int]:
    """``count`` frame indices spread evenly over ``num_frames`` (first and last included), without repeats."""
    if count <= 1 or num_frames <= 1:
        return [0]
    return sorted({round(i * (num_frames - 1) / (count - 1)) for i in range(count)})


def save_sample_grid(path: str | Path, generated: GeneratedSet, samples: int = 2, frames: int = 4,
                     max_rows: int = 32, title: str = "") -> Path:
    """A PNG of the generated clips: one row per condition (the first ``max_rows``), labelled with its name;
    columns: ``frames`` evenly spaced frames of each of the first ``samples`` clips of the condition.
    Written atomically (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from videoflex.io.video import atomic_output_path

    conditions = generated.conditions[:max_rows]
    picks = grid_frames(generated.video.shape[2], frames)
    per = [torch.nonzero(generated.condition == i)[:, 0][:samples].tolist() for i in range(len(conditions))]
    cols = max(len(p) for p in per) * len(picks)
    h, w = generated.video.shape[-2:]
    cell = 1.1
    label_width = min(4.5, 0.4 + 0.07 * max(len(c.name) for c in conditions))  # inches for the row names
    fig = plt.figure(figsize=(label_width + cols * cell * w / max(h, w), 0.5 + len(conditions) * cell * h / max(h, w)))
    grid = fig.add_gridspec(len(conditions), cols, left=label_width / fig.get_figwidth(), right=0.99,
                            top=1 - 0.45 / fig.get_figheight(), bottom=0.01, wspace=0.04, hspace=0.08)
    for r, (cond, clips) in enumerate(zip(conditions, per)):
        for s, clip in enumerate(clips):
            for f, frame in enumerate(picks):
                ax = fig.add_subplot(grid[r, s * len(picks) + f])
                image = ((generated.video[clip, :, frame].permute(1, 2, 0) + 1) * 127.5).clamp(0, 255).byte()
                ax.imshow(image.numpy(), interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                if r == 0:
                    ax.set_title(f"sample {s + 1}, frame {frame + 1}" if f == 0 else f"frame {frame + 1}",
                                 fontsize=7)
                if s == 0 and f == 0:
                    ax.set_ylabel(cond.name, rotation=0, ha="right", va="center", fontsize=8, wrap=True)
    if title:
        fig.suptitle(title, fontsize=9, x=0.01, ha="left")
    path = Path(path)
    with atomic_output_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path
