"""``videoflex eval generator``: sample clips from a generator for each class (or prompt) and compare them with
real clips of its dataset: gFVD, the class score of a linear probe trained on the real clips, the
class-shuffled control and, for text models on synthetic shapes, attribute recovery
(:mod:`videoflex.eval.generation`). Writes ``DIR/results.json`` and ``DIR/grid.png``."""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

from videoflex.cli.common import (
    Number,
    batch_size,
    input_file,
    model_output_checked,
    output_dir,
    output_folder,
    resolve_device,
    seed_value,
)
from videoflex.cli.errors import UserError
from videoflex.cli.eval_classes import I3D_MIN_FRAMES, i3d_weights_file, load_i3d_weights
from videoflex.cli.generate import (
    add_generation_options,
    check_budget,
    class_index,
    encode_prompts,
    load_generator,
    load_tokenizer,
    sample_count,
    sampling_config,
)
from videoflex.cli.prepare_data import add_clip_options, open_source, resolve_sources
from videoflex.data.config import SourceConfig
from videoflex.generators.ar.model import ARGenerator
from videoflex.models.identity import ModelIdentity
from videoflex.tokenizers.base import Tokenizer

grid_rows = Number(int, 1, 1024)
shape_probe_clips = Number(int, 0, 65536)
probe_copies = Number(int, 0, 16)


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``generator`` to ``videoflex eval``."""
    p = sub.add_parser(
        "generator", help="evaluate a generator: gFVD, class score, attribute recovery, a grid of samples",
        description="Sample --samples-per-class clips for every class (or prompt) of a generator, decode them with "
                    "its tokenizer, and compare them through I3D with real clips of the dataset (the same source "
                    "options as prepare-data and tokenize-dataset; the clips' --frames are the generated clips' "
                    "too): gFVD (I3D logits), the class score (mean probability of the requested class and top-1 "
                    "accuracy of a linear probe on pooled I3D features trained on the real clips), with "
                    "--shuffle-classes the same clips scored against a derangement of their classes, and for "
                    "text models on synthetic shapes the accuracy with which probes trained on real clips "
                    "recover each prompt's shape, colour and motion. Writes DIR/results.json and DIR/grid.png. "
                    "Needs the I3D weights: videoflex fetch i3d-weights.")
    p.add_argument("--model", required=True, metavar="PATH|PRESET", help="the generator (an ar-generator)")
    p.add_argument("-o", "--output", type=output_dir, required=True, metavar="DIR",
                   help="folder for results.json and grid.png (created if needed)")
    what = p.add_argument_group("conditions")
    what.add_argument("--samples-per-class", type=sample_count, default=8, metavar="N",
                      help="clips generated per class or prompt (default: 8)")
    what.add_argument("--classes", metavar="A,B,...",
                      help="class names or indices to generate (default: all of the generator's)")
    what.add_argument("--prompts", type=input_file, metavar="FILE",
                      help="text models: a file of prompts, one a line")
    what.add_argument("--prompt", action="append", metavar="TEXT", help="text models: a prompt (repeatable)")
    what.add_argument("--shuffle-classes", action="store_true",
                      help="also score the class-shuffled control: the clips against a random derangement of "
                           "their classes (should be worse: class score near chance, higher per-class FVD)")
    what.add_argument("--reconstruction-probe", action="store_true",
                      help="also score with probes trained on the tokenizer's reconstructions of the real clips "
                           "(at --budget): what the generator makes, as far as its tokenizer can show it")
    what.add_argument("--untrained", action="store_true",
                      help="the untrained control: score a generator of the same config with fresh random weights "
                           "(seeded by --sample-seed) in place of --model's trained ones")
    what.add_argument("--sample-seed", type=seed_value, default=0,
                      help="seed of the generated clips: condition i is sampled and decoded with seed S + i, and "
                           "the shuffled control's derangement is drawn from S (default: 0)")
    add_generation_options(p)
    add_clip_options(p, frames_help="also the generated clips' length: 1 + tf*m, at least 16 for I3D",
                     size_help="the tokenizer's")
    ev = p.add_argument_group("evaluation")
    ev.add_argument("--i3d-weights", type=i3d_weights_file, metavar="PATH",
                    help="I3D checkpoint (default: the file 'videoflex fetch i3d-weights' stores)")
    ev.add_argument("--batch-size", type=batch_size, default=8, metavar="N", help="clips through I3D at once (default: 8)")
    ev.add_argument("--probe-copies", type=probe_copies, default=2, metavar="N",
                    help="blurred and noised copies of the real clips (blur std up to 1.5 pixels, noise std up to "
                         "0.1, drawn per clip) added to the probes' training set, so that the probes score the "
                         "class and not the sharpness of a clip; 0: the real clips alone (default: 2)")
    ev.add_argument("--clip-classifier", action="store_true",
                    help="also score the clips with a small 3D CNN trained on the real clips at their own "
                         "resolution (videoflex.eval.clip_classifier; one per attribute for text models; about 2 "
                         "minutes each for 128 32x32 clips on 2 CPU cores), for small synthetic clips whose I3D "
                         "features follow sharpness more than content")
    ev.add_argument("--shape-probe-clips", type=shape_probe_clips, default=0, metavar="N",
                    help="text models on shapes: also score the prompts' shape with a classifier of centred "
                         "foreground silhouettes (videoflex.eval.silhouette) trained on the tokenizer's "
                         "reconstructions (at --budget) of N more clips of each source, drawn with the source's "
                         "seed + 1 (2048: about 4 minutes for 32x32 clips on one CPU core, reconstruction "
                         "included); its accuracy on the reconstructions of the real clips is reported with "
                         "--reconstruction-probe. 0: off (default); else at least 2")
    ev.add_argument("--feature-cache", type=output_dir, metavar="DIR", default=None,
                    help="folder where the real clips' I3D embeddings are stored and found again, keyed by the "
                         "SHA-256 of the I3D weights and the clips (default: $VIDEOFLEX_CACHE/i3d-features, or "
                         "~/.cache/videoflex/i3d-features)")
    ev.add_argument("--no-feature-cache", action="store_true", help="embed the real clips every time")
    ev.add_argument("--grid-rows", type=grid_rows, default=32, metavar="N",
                    help="conditions shown in grid.png (default: the first 32)")
    p.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run=run)


def feature_cache(args: argparse.Namespace) -> Path | None:
    """The folder of cached real-clip I3D embeddings (``--feature-cache``; ``None`` with ``--no-feature-cache``)."""
    from videoflex.utils.cache import default_cache_dir

    if args.no_feature_cache:
        return None
    return args.feature_cache or default_cache_dir() / "i3d-features"


@dataclass(frozen=True)
class ModelRecord:
    """A model in results.json: where it was loaded from and its identity."""

    source: str
    identity: ModelIdentity


@dataclass(frozen=True)
class EvalSettings:
    """How the clips were made: frames and latent steps, ids a step (budget), tokens a clip, clips per
    condition, the sampling settings, the generation seed, the real clips' seed and sources; and how the
    probes were trained (``probe_copies``: degraded copies of the real clips added; ``shape_probe_clips``: the
    clips per source, drawn with the source's seed + 1, whose reconstructions trained the silhouette classifier,
    0 when it was not asked for)."""

    frames: int
    steps: int
    budget: int
    tokens_per_clip: int
    samples_per_condition: int
    temperature: float
    top_k: int
    top_p: float
    cfg: float
    cfg_schedule: str
    sample_seed: int
    real_seed: int
    real_sources: tuple[SourceConfig, ...]
    probe_copies: int
    shape_probe_clips: int = 0


@dataclass(frozen=True)
class EvalGeneratorResult:
    """results.json (see :mod:`videoflex.eval.generation` for what each number is)."""

    generator: ModelRecord
    untrained: bool
    tokenizer: ModelRecord
    settings: EvalSettings
    conditions: tuple[str, ...]
    scores: object  # videoflex.eval.generation.GenerationScores
    class_probe: str
    wall_time_s: float


def _conditions(args: argparse.Namespace, generator) -> list:
    from videoflex.eval.generation import Condition

    c = generator.config
    text = bool(getattr(c, "text_encoder", ""))
    if text:
        if args.classes:
            raise UserError(f"--classes: the generator {c.name!r} is text-conditional; give --prompts or --prompt")
        prompts = list(args.prompt or [])
        if args.prompts is not None:
            prompts += [line.strip() for line in args.prompts.read_text().splitlines() if line.strip()]
        if not prompts:
            raise UserError(f"the generator {c.name!r} is text-conditional: give --prompts FILE or --prompt TEXT")
        return [Condition(p, prompt=p) for p in dict.fromkeys(prompts)]
    if args.prompt or args.prompts is not None:
        raise UserError(f"--prompt/--prompts: the generator {c.name!r} is not text-conditional")
    if not c.num_classes:
        raise UserError(f"the generator {c.name!r} is unconditional: eval generator scores classes or prompts")
    given = [part.strip() for part in args.classes.split(",") if part.strip()] if args.classes else None
    indices = [class_index(generator, g) for g in given] if given else list(range(c.num_classes))
    names = c.class_names or tuple(str(i) for i in range(c.num_classes))
    return [Condition(names[i], label=i) for i in dict.fromkeys(indices)]


def _real_clips(args: argparse.Namespace, sources, data, progress: bool):
    """The real clips of the sources (labels where every clip has one, shapes factors where all are shapes) and
    the class names the sources declare (None when unknown or different)."""
    from videoflex.data.shapes import ShapesDataset
    from videoflex.data.token_shards import class_names_of
    from videoflex.eval.generation import RealClips

    parts = [open_source(source, data) for source in sources]
    names = {class_names_of(dataset) for dataset, _ in parts}
    videos, labels, factors = [], [], []
    total = sum(count for _, count in parts)
    with tqdm(total=total, desc="real clips", disable=not progress) as bar:
        for dataset, count in parts:
            for i in range(count):
                sample = dataset[i]
                videos.append(sample.video)
                labels.append(sample.label)
                factors.append(dataset.factors(i) if isinstance(dataset, ShapesDataset) else None)
                bar.update(1)
    if len(videos) < 2:
        raise UserError(f"{len(videos)} real clip(s): FVD needs at least 2 (raise --count)")
    return RealClips(
        torch.stack(videos),
        torch.tensor(labels, dtype=torch.int64) if all(x is not None for x in labels) else None,
        tuple(factors) if all(f is not None for f in factors) else None,
    ), (names.pop() if len(names) == 1 else None)


@torch.no_grad()
def reconstruct(tokenizer: Tokenizer, video: torch.Tensor, budget: int, seed: int, batch_size: int, progress: bool) -> torch.Tensor:
    """``video [M, 3, T, H, W]`` in [-1, 1] tokenized and decoded from the first ``budget`` ids of each step
    (decoder noise seeded with ``seed``), on the CPU, in batches of ``batch_size`` clips."""
    noise = torch.Generator(device=tokenizer.device).manual_seed(seed)
    out = []
    for start in tqdm(range(0, video.shape[0], batch_size), desc="reconstructing", disable=not progress):
        clips = video[start:start + batch_size]
        ids = tokenizer.tokenize(clips)
        out.append(tokenizer.detokenize(ids, keep=budget, num_frames=clips.shape[2], generator=noise).cpu())
    return torch.cat(out)


def untrained_copy(generator: ARGenerator, seed: int) -> ARGenerator:
    """A generator of ``generator``'s config (classes, tokenizer, text encoder) with fresh weights: the preset
    initialisation drawn from ``seed``, on the same device, in eval mode."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh = ARGenerator(generator.config)
    return fresh.to(generator.head.weight.device).eval()


def run(args: argparse.Namespace) -> int:
    from videoflex.eval.clip_classifier import ClipClassifierConfig
    from videoflex.eval.generated_clips import steps_for_frames
    from videoflex.eval.generation import GenerationScores, generate_set, save_sample_grid, score_generations
    from videoflex.utils.json_io import to_json_text, write_json

    start = time.perf_counter()
    progress = not args.quiet
    device = resolve_device(args.device)
    loaded = load_generator(args.model, device)
    generator = loaded.model
    if args.untrained:
        generator = untrained_copy(generator, args.sample_seed)
    conditions = _conditions(args, generator)
    tok = load_tokenizer(loaded, args.tokenizer, device)
    tokenizer = tok.model
    budget = check_budget(generator, tokenizer, args.budget)
    h, w = tokenizer.image_size
    if h != w:
        raise UserError(f"--tokenizer: takes {w}x{h} frames; the real clips are square")
    sources, data = resolve_sources(args, h)
    if data.size != h:
        raise UserError(f"--size {data.size}: the tokenizer takes {h}x{h} frames")
    if data.frames < I3D_MIN_FRAMES:
        raise UserError(f"--frames {data.frames}: I3D needs at least {I3D_MIN_FRAMES} frames")
    try:
        steps = steps_for_frames(tokenizer, data.frames)
    except ValueError as err:
        raise UserError(f"--frames {data.frames}: {err}") from None
    sampling = sampling_config(args)
    i3d = load_i3d_weights(args.i3d_weights, device)
    real, real_names = _real_clips(args, sources, data, progress)
    if args.shape_probe_clips and (conditions[0].prompt is None or real.factors is None):
        raise UserError("--shape-probe-clips: the silhouette shape score is for text models on --source shapes")
    if args.shape_probe_clips == 1:
        raise UserError("--shape-probe-clips 1: the silhouette classifier needs at least 2 clips")
    class_names = generator.config.class_names
    if conditions[0].label is not None and class_names and real_names and tuple(real_names) != tuple(class_names):
        raise UserError(f"the real clips' classes ({', '.join(real_names[:8])}, ...) are not the generator's "
                        f"({', '.join(class_names[:8])}, ...)")
    encode = None
    if conditions[0].prompt is not None:
        def encode(prompts: list[str]):
            return encode_prompts(generator, prompts, device)
    try:
        with model_output_checked(tok):
            generated = generate_set(generator, tokenizer, conditions, args.samples_per_class, steps, budget,
                                     sampling, args.sample_seed, encode, use_cache=not args.no_cache,
                                     progress=progress)
        recon = reconstruct(tokenizer, real.video, budget, args.sample_seed, args.batch_size, progress) \
            if args.reconstruction_probe else None
        shape_clips = None
        if args.shape_probe_clips:
            extra, _ = _real_clips(args, [replace(s, count=args.shape_probe_clips, seed=s.seed + 1) for s in sources],
                                   data, progress)
            shape_clips = replace(extra, video=reconstruct(tokenizer, extra.video, budget, args.sample_seed + 1,
                                                           args.batch_size, progress))
        scores: GenerationScores = score_generations(
            i3d, real, generated, class_names, args.sample_seed if args.shuffle_classes else None,
            batch_size=args.batch_size, progress=progress, recon=recon, real_cache=feature_cache(args),
            probe_copies=args.probe_copies,
            clip_classifier=ClipClassifierConfig() if args.clip_classifier else None, shape_clips=shape_clips)
    except ValueError as err:
        raise UserError(str(err)) from None
    settings = EvalSettings(data.frames, steps, budget, steps * budget, args.samples_per_class, sampling.temperature,
                            sampling.top_k, sampling.top_p, sampling.cfg_scale, sampling.cfg_schedule,
                            args.sample_seed, args.seed, tuple(sources), args.probe_copies, args.shape_probe_clips)
    result = EvalGeneratorResult(
        ModelRecord(loaded.source, generator.identity), args.untrained, ModelRecord(tok.source, tokenizer.identity),
        settings,
        tuple(c.name for c in conditions), scores,
        "linear probe on pooled I3D Mixed_5c features (1024-d, Kinetics-400 weights) trained on the real clips "
        f"and {args.probe_copies} blurred and noised copies of them (videoflex.eval.class_probe, "
        "videoflex.eval.degrade); one per attribute for prompts", time.perf_counter() - start)
    to_json_text(result)  # strict JSON: checked before anything is written
    out = output_folder(args.output)
    grid = save_sample_grid(out / "grid.png", generated, max_rows=args.grid_rows,
                            title=f"{generator.config.name}: {steps} steps x {budget} tokens, seed {args.sample_seed}")
    json_path = write_json(out / "results.json", result)
    _print(scores, generated.video.shape[0], json_path, grid)
    return 0


def _class_line(head: str, c, note: str, distance: str) -> str:
    """One line of a class score (``ClassScores``): its mean probability and top-1, ``note``, and its per-class
    distance under the name ``distance`` when there is one."""
    return (f"{head}class score {c.mean_prob:.3f}, top-1 {c.top1:.3f}{note}"
            + (f", {distance} {c.class_fvd:.2f}" if c.class_fvd else ""))


def _print(scores, generated: int, json_path: Path, grid: Path) -> None:
    print(f"gFVD {scores.gfvd:.2f} ({generated} generated vs {scores.real_clips} real clips)")
    if scores.classes is not None:
        c = scores.classes
        note = f" (chance {c.chance:.3f}; probe on real clips: top-1 {scores.probe_real_top1:.3f})"
        print(_class_line("", c, note, "per-class FVD"))
    if scores.shuffled is not None:
        print(_class_line("class-shuffled control: ", scores.shuffled, "", "per-class FVD"))
    for a in scores.attributes:
        print(f"{a.attribute:<7} recovered {a.accuracy:.3f} (chance {a.chance:.3f}, probe on real clips {a.real_top1:.3f})")
    if scores.recon_classes is not None:
        c = scores.recon_classes
        print(f"the probe trained on real clips recognises {scores.real_probe_recon_top1:.3f} of their reconstructions "
              f"by the tokenizer")
        print(f"probe trained on the tokenizer's reconstructions: class score {c.mean_prob:.3f}, top-1 {c.top1:.3f} "
              f"(its top-1 on them {scores.recon_probe_real_top1:.3f})")
    for a in scores.recon_attributes:
        print(f"{a.attribute:<7} recovered {a.accuracy:.3f} by a probe trained on reconstructions "
              f"(its top-1 on them {a.real_top1:.3f})")
    if scores.clip_classes is not None:
        c = scores.clip_classes
        print(_class_line("clip classifier trained on real clips: ", c, f" (chance {c.chance:.3f})",
                          "per-class FD in its features"))
    if scores.clip_shuffled is not None:
        print(_class_line("clip classifier, class-shuffled control: ", scores.clip_shuffled, "",
                          "per-class FD in its features"))
    for a in scores.clip_attributes:
        print(f"{a.attribute:<7} recovered {a.accuracy:.3f} by a clip classifier trained on real clips (its top-1 on "
              f"them {a.real_top1:.3f}" + (f", on the tokenizer's reconstructions of them {a.recon_top1:.3f})"
                                           if a.recon_top1 is not None else ")"))
    if scores.clip_recon_top1 is not None:
        print(f"the clip classifier recognises {scores.clip_recon_top1:.3f} of the tokenizer's reconstructions "
              f"of the real clips")
    if (a := scores.silhouette_shape) is not None:
        print(f"shape   recovered {a.accuracy:.3f} by a silhouette classifier trained on reconstructions of other "
              f"real clips (chance {a.chance:.3f}; its top-1 on them {a.real_top1:.3f}"
              + (f", on the reconstructions of the real clips {a.recon_top1:.3f})" if a.recon_top1 is not None
                 else ")"))
    print(f"wrote {json_path}, {grid}")
