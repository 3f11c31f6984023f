"""``videoflex generate``: sample videos from a generator (class- or text-conditional) and decode them with the
tokenizer it records.

The generator (``--model``, kind ``ar-generator``) records its tokenizer (``ARConfig.tokenizer``): the path it was
loaded from and its identity. The tokenizer is loaded from ``--tokenizer`` or that path (relative paths are
looked up in the working folder, then in the generator's folder), and refused when its identity is not the
recorded one. The helpers here (loading the pair, the sampling options, conditions) are shared with
``videoflex eval generator``.
"""

from __future__ import annotations

import argparse
import functools
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from videoflex import registry
from videoflex.cli.common import (
    LoadedModel,
    Number,
    check_output_path,
    frame_count,
    frame_rate,
    make_parent,
    model_output_checked,
    non_negative_float,
    non_negative_int,
    output_file,
    positive_int,
    resolve_device,
    seed_value,
    size_text,
)
from videoflex.cli.errors import UserError
from videoflex.eval.generation import Condition
from videoflex.generators.ar.model import ARGenerator
from videoflex.generators.ar.sampling import SamplingConfig
from videoflex.io.video import MP4_SUFFIXES
from videoflex.tokenizers.base import Tokenizer

top_p_value = Number(float, 0, 1, above=True)
cfg_scale_value = Number(float, 0, 100)
sample_count = Number(int, 1, 4096)
step_count = Number(int, 1, 25_000)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "generate", help="sample videos from a class- or text-conditional generator",
        description="Sample token ids from a generator (--model, an ar-generator) for a class (--class) or a "
                    "prompt (--prompt), decode them with the tokenizer the generator records (or --tokenizer; "
                    "one of another identity is refused) and write an mp4 (-o OUT.mp4; a folder of "
                    "sample-NNN.mp4 for --num N > 1, of NN-NAME-NNN.mp4 for several classes or prompts). "
                    "--grid writes a PNG of a few frames of every sample. Videos longer than the generator's "
                    "window slide it over whole latent steps. The same --seed and options give the same bytes.")
    p.add_argument("--model", required=True, metavar="PATH|PRESET",
                   help="the generator: a saved ar-generator (folder or model.safetensors) or a preset name "
                        "(random weights)")
    cond = p.add_mutually_exclusive_group()
    cond.add_argument("--class", dest="class_", metavar="NAME|INDEX[,...]",
                      help="the class to generate (a name of the generator's classes, or an index); several "
                           "separated by commas")
    cond.add_argument("--prompt", action="append", metavar="TEXT",
                      help="the prompt of a text-conditional generator (repeat for several)")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--frames", type=frame_count, metavar="F",
                        help="frames of the video, 1 + tf*m for the tokenizer's temporal factor tf (default: "
                             "one chunk of the tokenizer, 17 for tf 4)")
    length.add_argument("--steps", type=step_count, metavar="T",
                        help="latent steps instead of --frames (T steps = 1 + tf*(T-1) frames)")
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="the video to write (.mp4, .m4v, .mov, .mkv or .gif); with --num N > 1 a folder that "
                        "receives sample-000.mp4, ...; with several classes or prompts a folder that receives "
                        "00-NAME-000.mp4, ...")
    p.add_argument("--grid", type=output_file, metavar="PNG",
                   help="also write a PNG grid: one row per class or prompt, four frames of each of its first "
                        "four samples")
    p.add_argument("--num", type=sample_count, default=1, metavar="N", help="videos to sample at once (default: 1)")
    p.add_argument("--ids", metavar="PATH",
                   help="also write the sampled ids as a token file (.safetensors; a folder of "
                        "sample-NNN.safetensors or NN-NAME-NNN.safetensors, as -o), readable by 'videoflex "
                        "detokenize'")
    p.add_argument("--fps", type=frame_rate,
                   help="frame rate written in the video (default: the generator's, the rate of the clips it "
                        "was trained on)")
    p.add_argument("--seed", type=seed_value, default=0,
                   help="seed of the ids' draws (the generator) and of the decoder's noise (the tokenizer); the "
                        "i-th class or prompt uses seed + i: the same seed gives the same videos (default: 0)")
    add_generation_options(p)
    p.add_argument("--device", default="cpu", help="torch device to run on, e.g. cpu, cuda (default: cpu)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run=run)


def add_generation_options(p: argparse.ArgumentParser) -> None:
    """``--tokenizer``, ``--budget`` and the sampling options (temperature, top-k, top-p, CFG, cache)."""
    g = p.add_argument_group("sampling")
    g.add_argument("--tokenizer", metavar="PATH|PRESET",
                   help="the tokenizer that decodes the ids (default: the one the generator records; its "
                        "identity must match the recorded one)")
    g.add_argument("--budget", type=positive_int, metavar="K",
                   help="ids sampled per latent step (default: the generator's tokens_per_step)")
    g.add_argument("--temperature", type=non_negative_float, default=1.0,
                   help="divides the logits; 0 = greedy (default: 1)")
    g.add_argument("--top-k", type=non_negative_int, default=0, help="keep the K most likely ids (default: 0, all)")
    g.add_argument("--top-p", type=top_p_value, default=1.0,
                   help="keep the most likely ids up to this total probability (default: 1, all)")
    g.add_argument("--cfg", type=cfg_scale_value, default=1.0,
                   help="classifier-free guidance scale on the logits, 1 = none (default: 1)")
    g.add_argument("--cfg-schedule", choices=("constant", "linear"), default="constant",
                   help="constant scale, or growing linearly from 1 to --cfg over the sequence (default: constant)")
    g.add_argument("--no-cache", action="store_true",
                   help="recompute the whole prefix for every id instead of using the KV cache (same ids, slower)")


def sampling_config(args: argparse.Namespace) -> SamplingConfig:
    """The :class:`SamplingConfig` of the options of :func:`add_generation_options`."""
    return SamplingConfig(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, cfg_scale=args.cfg,
                          cfg_schedule=args.cfg_schedule)


# ----------------------------------------------------------------------------- loading the pair


@dataclass(frozen=True)
class LoadedGenerator:
    """A generator, where it came from (``source``: a path or ``"preset NAME (random weights)"``) and its folder
    (None for a preset), where a relative recorded tokenizer path is also looked up."""

    model: ARGenerator
    source: str
    folder: Path | None


def _load(spec: str, device: torch.device, option: str):
    path = Path(spec)
    if path.exists():
        try:
            return registry.load_model(path, device=str(device)), str(path), path if path.is_dir() else path.parent
        except (ValueError, FileNotFoundError) as err:
            message = str(err)
            raise UserError(f"{option} {spec}: {message}" if not message.startswith(str(path)) else message) from None
    if spec in registry.PRESETS:
        return registry.load_model(spec, device=device), f"preset {spec} (random weights)", None
    raise UserError(f"{option} {spec}: no such file or folder, and not a preset")


def load_generator(spec: str, device: torch.device) -> LoadedGenerator:
    """The ``ar-generator`` at ``spec`` (a saved model or a preset); ``UserError`` for anything else."""
    model, source, folder = _load(spec, device, "--model")
    if not isinstance(model, ARGenerator):
        raise UserError(f"--model {spec}: a {model.kind} model, not a generator (kind ar-generator)")
    return LoadedGenerator(model.eval(), source, folder)


def tokenizer_spec(loaded: LoadedGenerator, given: str | None) -> str:
    """Where the tokenizer is loaded from: ``given`` (``--tokenizer``), else the recorded path, found as given
    (absolute, or relative to the working folder), then relative to the generator's folder, then as a preset
    name. ``UserError`` when nothing is recorded or the recorded path is not found."""
    if given is not None:
        return given
    recorded = loaded.model.config.tokenizer.path
    if not recorded:
        raise UserError(f"--model {loaded.source}: the generator records no tokenizer; pass --tokenizer PATH")
    if Path(recorded).exists():
        return recorded
    if loaded.folder is not None and not Path(recorded).is_absolute() and (loaded.folder / recorded).exists():
        return str(loaded.folder / recorded)
    if recorded in registry.PRESETS:
        return recorded
    where = f" or in {loaded.folder}" if loaded.folder is not None else ""
    raise UserError(f"--model {loaded.source}: its tokenizer {recorded} is not in the working folder{where}; "
                    f"pass --tokenizer PATH")


def load_tokenizer(loaded: LoadedGenerator, given: str | None, device: torch.device) -> LoadedModel:
    """The generator's tokenizer (see :func:`tokenizer_spec`), checked against the recorded identity: a mismatch
    is a ``UserError`` naming both identities. A generator that records no identity gets a warning."""
    from videoflex.cli.common import warn

    spec = tokenizer_spec(loaded, given)
    model, source, _ = _load(spec, device, "--tokenizer")
    if not isinstance(model, Tokenizer):
        raise UserError(f"--tokenizer {spec}: a {model.kind} model, not a tokenizer")
    recorded = loaded.model.config.tokenizer.identity
    if recorded is None:
        warn(f"--model {loaded.source}: the generator records no tokenizer identity; {spec} is not checked")
    elif not recorded.same_model(model.identity):
        raise UserError(f"--tokenizer {spec}: the tokenizer is {model.identity}, but the generator "
                        f"{loaded.model.config.name!r} models the ids of {recorded}")
    return LoadedModel(model.eval(), source)


def check_budget(generator: ARGenerator, tokenizer: Tokenizer, budget: int | None) -> int:
    """``--budget`` (default: the generator's tokens_per_step) checked against both models (``UserError``)."""
    from videoflex.eval.generated_clips import check_pair

    budget = generator.config.tokens_per_step if budget is None else budget
    try:
        check_pair(generator, tokenizer, budget)
    except ValueError as err:
        message = str(err)
        raise UserError(f"--{message}" if message.startswith("budget") else message) from None
    return budget


def clip_steps(tokenizer: Tokenizer, frames: int | None, steps: int | None) -> tuple[int, int]:
    """``(frames, steps)`` from ``--frames`` or ``--steps`` (default: one chunk of the tokenizer); ``UserError``
    for a frame count that is not ``1 + tf*m``, naming the nearest valid counts."""
    from videoflex.eval.generated_clips import frames_for_steps, steps_for_frames

    if steps is not None:
        return frames_for_steps(tokenizer, steps), steps
    frames = tokenizer.clip_frames if frames is None else frames
    try:
        return frames, steps_for_frames(tokenizer, frames)
    except ValueError as err:
        raise UserError(f"--frames {frames}: {err}") from None


# ----------------------------------------------------------------------------- conditions


def class_index(generator: ARGenerator, given: str) -> int:
    """The class id ``--class`` names: one of ``ARConfig.class_names``, or an index in ``[0, num_classes)``.
    ``UserError`` listing the names for an unknown one."""
    c = generator.config
    if given in c.class_names:
        return c.class_names.index(given)
    if given.strip().isdigit():
        index = int(given)
        if index < c.num_classes:
            return index
        raise UserError(f"--class {given}: the generator has {c.num_classes} classes (0 to {c.num_classes - 1})")
    names = ", ".join(c.class_names) if c.class_names else "none; give an index"
    raise UserError(f"--class {given}: unknown class; the generator's class names are: {names}")


def check_condition(generator: ARGenerator, class_: str | None, prompt: list[str] | None) -> None:
    """``UserError`` unless the condition fits the model: a class for a class model, a prompt for a text model,
    neither for an unconditional one."""
    c = generator.config
    text = bool(getattr(c, "text_encoder", ""))
    if text:
        if class_ is not None:
            raise UserError(f"--class: the generator {c.name!r} is text-conditional; give --prompt TEXT")
        if prompt is None:
            raise UserError(f"the generator {c.name!r} is text-conditional: give --prompt TEXT")
    elif c.num_classes:
        if prompt is not None:
            raise UserError(f"--prompt: the generator {c.name!r} is class-conditional; give --class NAME|INDEX")
        if class_ is None:
            names = f" ({', '.join(c.class_names)})" if c.class_names else f" (0 to {c.num_classes - 1})"
            raise UserError(f"the generator {c.name!r} is class-conditional: give --class NAME|INDEX{names}")
    elif class_ is not None or prompt is not None:
        raise UserError(f"--{'class' if class_ is not None else 'prompt'}: the generator {c.name!r} is "
                        f"unconditional")


@functools.lru_cache(maxsize=2)
def _text_encoder(spec: str, device: torch.device, max_tokens: int):
    from videoflex.generators.text_encoder import TextEncoder

    try:
        return TextEncoder.load(spec, device=device, max_tokens=max_tokens)
    except (ValueError, FileNotFoundError) as err:
        raise UserError(f"text encoder {spec}: {err}") from None


def encode_prompts(generator: ARGenerator, prompts: list[str], device: torch.device):
    """The prompts' features (``TextFeatures [B, L, D]``) from the generator's text encoder (loaded once per
    encoder, device and length)."""
    c = generator.config
    return _text_encoder(c.text_encoder, device, c.text_max_tokens).encode(prompts)


# ----------------------------------------------------------------------------- the command


def conditions_of(generator: ARGenerator, args: argparse.Namespace) -> list[Condition]:
    """The classes (``--class A,B``) or prompts (``--prompt`` repeated) to generate, in order, without repeats;
    one unconditional entry for an unconditional generator."""
    from videoflex.eval.generation import Condition

    check_condition(generator, args.class_, args.prompt)
    if args.class_ is not None:
        names = generator.config.class_names
        given = [part.strip() for part in args.class_.split(",") if part.strip()]
        if not given:
            raise UserError(f"--class {args.class_!r}: name at least one class")
        indices = dict.fromkeys(class_index(generator, name) for name in given)
        return [Condition(names[i] if names else str(i), label=i) for i in indices]
    if args.prompt is not None:
        return [Condition(p, prompt=p) for p in dict.fromkeys(args.prompt)]
    return [Condition("unconditional", label=generator.config.null_class)]


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in name.lower()).strip("-")[:40] or "condition"


def _outputs(args: argparse.Namespace, conditions: list[Condition]) -> tuple[list[list[Path]], list[list[Path]] | None]:
    """The video (and token) files to write, per condition and sample, checked before any work."""
    n, many = args.num, len(conditions) > 1

    def names(suffix: str) -> list[list[str]]:
        if many:
            return [[f"{i:02d}-{_slug(c.name)}-{j:03d}{suffix}" for j in range(n)] for i, c in enumerate(conditions)]
        return [[f"sample-{j:03d}{suffix}" for j in range(n)]]

    suffixes = (*MP4_SUFFIXES, ".gif")
    if n == 1 and not many:
        out = check_output_path(args.output, folder=False)
        if out.suffix.lower() not in suffixes:
            raise UserError(f"-o {out}: the file name must end in {' or '.join(suffixes)}")
        videos = [[out]]
    else:
        folder = check_output_path(args.output, folder=True)
        videos = [[folder / name for name in row] for row in names(".mp4")]
    ids = None
    if args.ids is not None:
        if n == 1 and not many:
            path = check_output_path(args.ids, folder=False)
            if path.suffix != ".safetensors":
                raise UserError(f"--ids {path}: the file name must end in .safetensors")
            ids = [[path]]
        else:
            folder = check_output_path(args.ids, folder=True)
            ids = [[folder / name for name in row] for row in names(".safetensors")]
    if args.grid is not None:
        grid = check_output_path(args.grid, folder=False)
        if grid.suffix.lower() != ".png":
            raise UserError(f"--grid {grid}: the file name must end in .png")
    return videos, ids


def run(args: argparse.Namespace) -> int:
    from videoflex.eval.generated_clips import decode_ids, sample_ids
    from videoflex.eval.generation import GeneratedSet, save_sample_grid
    from videoflex.io.tokens import TokenMetadata, VideoTokens, save_tokens
    from videoflex.io.video import write_video

    device = resolve_device(args.device)
    loaded = load_generator(args.model, device)
    generator = loaded.model
    conditions = conditions_of(generator, args)
    videos, id_files = _outputs(args, conditions)
    tok = load_tokenizer(loaded, args.tokenizer, device)
    tokenizer = tok.model
    budget = check_budget(generator, tokenizer, args.budget)
    frames, steps = clip_steps(tokenizer, args.frames, args.steps)
    sampling = sampling_config(args)
    if sampling.guided and not generator.config.num_classes and not generator.config.has_text:
        raise UserError(f"--cfg {args.cfg:g}: the generator {generator.config.name!r} is unconditional")
    fps = args.fps or generator.config.fps
    sampling_s = decoding_s = 0.0
    all_ids, all_video = [], []
    for i, condition in enumerate(conditions):
        labels, text = None, None
        if condition.prompt is not None:
            text = encode_prompts(generator, [condition.prompt] * args.num, device)
        elif generator.config.num_classes:
            labels = torch.full((args.num,), condition.label, dtype=torch.int64)
        start = time.perf_counter()
        try:
            ids = sample_ids(generator, labels, steps, budget, sampling, args.seed + i, text,
                             use_cache=not args.no_cache, progress=not args.quiet)
        except ValueError as err:
            raise UserError(f"--model {loaded.source}: {err}") from None
        sampled = time.perf_counter()
        with model_output_checked(tok):
            video = decode_ids(tokenizer, ids, budget, args.seed + i, progress=not args.quiet)
        sampling_s += sampled - start
        decoding_s += time.perf_counter() - sampled
        for j, path in enumerate(videos[i]):
            write_video(make_parent(path), video[j], fps)
        if id_files is not None:
            meta = TokenMetadata.for_model(tokenizer, num_frames=frames, fps=fps, source_size=tokenizer.image_size,
                                           source_path=f"videoflex generate --model {loaded.source}")
            for j, path in enumerate(id_files[i]):
                save_tokens(make_parent(path), VideoTokens(ids[j].cpu(), meta))
        all_ids.append(ids.cpu())
        all_video.append(video)
    if args.grid is not None:
        index = torch.arange(len(conditions)).repeat_interleave(args.num)
        generated = GeneratedSet(torch.cat(all_video), torch.cat(all_ids), index, tuple(conditions))
        save_sample_grid(make_parent(Path(args.grid)), generated, samples=min(args.num, 4),
                         title=f"{generator.config.name}: {steps} steps x {budget} tokens, seed {args.seed}")
    tokens = steps * budget
    count = len(conditions) * args.num
    if len(conditions) > 1:
        what = f"{len(conditions)} {'prompts' if args.prompt else 'classes'}"
    elif args.prompt:
        what = f"prompt {conditions[0].prompt!r}"
    elif args.class_ is not None:
        what = f"class {conditions[0].label}" + (f" ({conditions[0].name})" if generator.config.class_names else "")
    else:
        what = "unconditional"
    where = videos[0][0] if count == 1 else f"{count} videos in {args.output}"
    print(f"{generator.config.name} ({loaded.source}), {what}: {count} x {frames} frames at "
          f"{size_text(tokenizer.image_size)}, {fps:g} fps, from {steps} steps x {budget} tokens = {tokens} tokens "
          f"each; seed {args.seed}; sampling {sampling_s:.1f} s, decoding {decoding_s:.1f} s, "
          f"{sampling_s + decoding_s:.1f} s in all -> {where}" + (f", grid {args.grid}" if args.grid else ""))
    return 0
