"""videoflex against the reference implementation, side by side in one process: parity, then speed.

    python benchmarks/vs_reference.py [--reference PATH] [--sizes S L] [--repeats 5] [--quick] [--threads 1]
        [--keep-freed-memory]

``--reference PATH``: a checkout of the released VideoFlexTok code (``apple/ml-videoflextok`` at commit
``4fd72ec0c0c8c05f879012cce285d5a14c81920f``, e.g. from the fork ``stipefrkovic/ml-videoflextok``); nothing
of it is part of this repository. It needs ``hydra-core``, ``omegaconf`` and ``mup`` importable (``pip install
hydra-core mup``); its unused module-level imports of ``torchvision`` and ``diffusers`` are stubbed when those
are missing, and its attention layers' ``torch.compile(flex_attention)`` is replaced by the eager
``flex_attention`` (what ``TORCHDYNAMO_DISABLE=1`` does in ``tests/fixtures/README.md``), so that it runs eagerly.

For each size (:data:`SIZES`), the reference model is built with its own classes from a hub config (the
committed parity fixture's config with the size's numbers), given random weights, saved in its checkpoint format
and loaded back through its loader (``load_safetensors`` + ``VideoFlexTokFromHub`` + strict ``load_state_dict``);
videoflex loads the same file through ``videoflex.load_model``. The reference's packaged VidTok config (width
128) gets the size's VAE width while it builds. Both use posterior means (no global-RNG draw). Parity, from
the first call of each operation (which is also the warm-up): token ids of the 17- and 33-frame clips
identical, and the videos decoded from the 33-frame ids (2 and 8 flow steps, 17 and 33 frames, the same
generator seed, hence the same flow noise) within 1e-4 relative (``max|a-b| / max|b|``).
Then every operation is timed for both, interleaved (reference, videoflex, then the other order the next
repeat), ``--repeats`` times: the minimum and median seconds of each and the ratios reference / videoflex.
Without ``--reference`` videoflex is timed alone (random weights of the same recipe).

Prints one JSON object. Benchmark with ``OMP_NUM_THREADS=1`` (or ``--threads 1``) on a shared machine.
``--keep-freed-memory`` runs both with freed memory kept in the process (what the ``videoflex`` command does,
:mod:`videoflex.utils.memory`); by default both run under the C library's defaults, as a plain Python
process would.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import dataclasses
import json
import statistics
import sys
import tempfile
import time
import types
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.nn.attention.flex_attention import flex_attention

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "tests" / "fixtures" / "official_small.safetensors"  # its metadata: the hub config template
TOLERANCE = 1e-4
GUIDANCE, APG_THRESHOLD = 20.0, 0.6  # the released README's sampler (APG, eta 0, momentum 0)


@dataclass(frozen=True)
class Size:
    """One benchmark configuration (the numbers of issue 19)."""

    name: str
    image: int  # square frames, pixels
    vae_base: int  # VidTok base channels (released: 128)
    encoder_width: int
    encoder_depth: int
    decoder_width: int
    decoder_depth: int
    head_dim: int
    registers: int


SIZES = {
    "S": Size("S", 64, 16, 64, 2, 128, 2, 32, 16),
    "L": Size("L", 128, 32, 256, 4, 256, 4, 64, 64),
}


@dataclass(frozen=True)
class Operation:
    """One timed call: tokenize ``frames`` frames, or decode them with ``steps`` flow steps."""

    kind: str  # "tokenize" | "decode"
    frames: int
    steps: int = 0

    @property
    def name(self) -> str:
        return f"tokenize_{self.frames}f" if self.kind == "tokenize" else f"decode_{self.frames}f_{self.steps}steps"


OPERATIONS = (Operation("tokenize", 17), Operation("tokenize", 33),
              Operation("decode", 17, 2), Operation("decode", 17, 8),
              Operation("decode", 33, 2), Operation("decode", 33, 8))


# ------------------------------------------------------------------------------------------- the config


def hub_config(size: Size) -> dict[str, Any]:
    """The reference's hub config at ``size``: the parity fixture's config (tests/fixtures/README.md) with
    the widths, depths, head size, register count, position-table and video sizes replaced."""
    with open(TEMPLATE, "rb") as f:  # the safetensors header: 8-byte length, then JSON
        header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
    meta = header["__metadata__"]
    tokenizer = ast.literal_eval(meta["video_flex_tok"])
    latent = size.image // 8  # VidTok kl_causal_488: 8x spatial
    steps = 5  # 17 frames, 4x temporal
    for part, width, depth in (("encoder", size.encoder_width, size.encoder_depth),
                               ("decoder", size.decoder_width, size.decoder_depth)):
        for module in tokenizer[part]["module_dict"].values():
            if "dim" in module:
                module["dim"] = width
            if "depth" in module:
                module["depth"] = depth
            if "head_dim" in module:
                module["head_dim"] = size.head_dim
            if "max_sizes" in module:
                module["max_sizes"] = [max(steps, latent)] * 3  # the reference needs equal sizes
            if "n_min" in module:
                module["n_min"] = module["n_max"] = size.registers
    return {"video_flex_tok": tokenizer, "chunk_size": int(meta["chunk_size"]),
            "overlap_size_frames": int(meta["overlap_size_frames"]), "vae_video_sizes": [steps, latent, latent],
            "video_preprocess_args": {"size": size.image, "chunk_size": 17, "overlap_size": 1}}


def randomize_(state: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """Random values of a useful scale for every tensor (the fixture's recipe): matrices ``randn/sqrt(fan_in)``,
    norm weights ``1 + 0.1 randn``, biases ``0.05 randn``, everything else (tokens, tables, VAE mixing
    factors) ``0.5 randn``. Keys are visited in sorted order, so the values depend on the names only."""
    generator = torch.Generator().manual_seed(seed)
    out = {}
    for key in sorted(state):
        t = state[key]
        noise = torch.randn(t.shape, generator=generator)
        if key.endswith(".bias"):
            value = 0.05 * noise
        elif t.dim() == 1 and key.endswith(".weight"):
            value = 1 + 0.1 * noise
        elif t.dim() >= 2 and key.endswith(".weight"):
            value = noise / t[0].numel() ** 0.5
        else:
            value = 0.5 * noise
        out[key] = value.to(t.dtype)
    return out


# ------------------------------------------------------------------------------------------- the reference


def import_reference(path: Path) -> types.ModuleType:
    """Import the reference package from a checkout, stubbing its unused imports that are not installed."""
    sys.path.insert(0, str(path))
    for name, attrs in (("torchvision.transforms.functional", {}),
                        ("diffusers.schedulers.scheduling_utils", {"SchedulerMixin": type("SchedulerMixin", (), {})})):
        try:
            __import__(name)
        except ImportError:
            parts = name.split(".")
            for i in range(1, len(parts) + 1):
                module = sys.modules.setdefault(".".join(parts[:i]), types.ModuleType(".".join(parts[:i])))
            module.__dict__.update(attrs)
    from videoflextok import wrappers
    from videoflextok.compressors import vidtok

    # its eager flex attention warns at every call that it is not compiled (intended here)
    warnings.filterwarnings("ignore", message=".*flex_attention called without torch.compile.*")
    return types.SimpleNamespace(vidtok=vidtok, wrappers=wrappers)


def build_reference(ref: types.SimpleNamespace, config: dict[str, Any], vae_base: int) -> torch.nn.Module:
    """``VideoFlexTokFromHub(config)`` with the packaged VidTok config's width set to ``vae_base`` (the reference
    always builds the released width 128)."""
    original = ref.vidtok.load_model_from_config

    def narrow(config_path: Path, ignore_keys: list[str] | None = None, verbose: bool = False) -> torch.nn.Module:
        from omegaconf import OmegaConf

        cfg = OmegaConf.load(config_path)
        cfg.model.params.encoder_config.params.ch = vae_base
        narrowed = Path(tempfile.mkdtemp()) / Path(config_path).name
        OmegaConf.save(cfg, narrowed)
        return original(narrowed, ignore_keys, verbose)

    ref.vidtok.load_model_from_config = narrow
    try:
        model = ref.wrappers.VideoFlexTokFromHub(config).eval()
    finally:
        ref.vidtok.load_model_from_config = original
    for module in model.modules():  # its attention layers hold torch.compile(flex_attention): run it eagerly
        if hasattr(module, "flex_attention"):
            module.flex_attention = flex_attention
    return model


@dataclass
class Pair:
    """The two models of one size on the same weights (``reference`` None when timed alone)."""

    size: Size
    ours: torch.nn.Module
    reference: torch.nn.Module | None


def load_pair(size: Size, reference_path: Path | None, folder: Path) -> Pair:
    """Both models from one random-weight checkpoint in the reference's format (posterior means)."""
    from videoflex import load_model
    from videoflex.tokenizers.flex.model import VideoFlexTok
    from videoflex.tokenizers.flex.official.config import parse_official_config

    config = hub_config(size)
    if reference_path is None:
        ours = VideoFlexTok(parse_official_config(config, vae_base_channels=size.vae_base)[0])
        ours.load_state_dict(randomize_(ours.state_dict(), seed=1))
        return Pair(size, _posterior_mean(ours), None)
    ref = import_reference(reference_path)
    from videoflextok.utils.checkpoint import load_safetensors, save_safetensors

    model = build_reference(ref, config, size.vae_base)
    file = folder / f"reference_{size.name}.safetensors"
    save_safetensors(randomize_(model.state_dict(), seed=1), str(file), metadata_dict=config)
    tensors, metadata = load_safetensors(str(file))
    reference = build_reference(ref, metadata, size.vae_base)
    reference.load_state_dict(tensors, strict=True)
    reference.video_tokenizer.vae.vidtok.regularization.sample = False
    return Pair(size, _posterior_mean(load_model(file)), reference.eval())


def _posterior_mean(model: torch.nn.Module) -> torch.nn.Module:
    """The same weights under ``sample_posterior=False``."""
    from videoflex.tokenizers.flex.model import VideoFlexTok

    with torch.device("meta"):
        other = VideoFlexTok(dataclasses.replace(model.config, sample_posterior=False))
    other.load_state_dict(model.state_dict(), assign=True)
    return other.eval()


# ------------------------------------------------------------------------------------------- the calls


def calls(pair: Pair, op: Operation, video: torch.Tensor, ids: torch.Tensor) -> dict[str, Callable[[], torch.Tensor]]:
    """The operation as a zero-argument call per implementation, each returning ids or float32 video."""
    from videoflex import SamplerConfig

    clip = video[:, :, : op.frames]
    t = 1 + (op.frames - 1) // 4
    out: dict[str, Callable[[], torch.Tensor]] = {}
    if op.kind == "tokenize":
        out["videoflex"] = lambda: pair.ours.tokenize(clip)
        if pair.reference is not None:
            out["reference"] = lambda: torch.cat(pair.reference.tokenize(clip))
        return out
    sampler = SamplerConfig(steps=op.steps, guidance=GUIDANCE, guidance_method="apg", apg_threshold=APG_THRESHOLD)
    chunk_ids = ids[:, :t]
    out["videoflex"] = lambda: pair.ours.detokenize(chunk_ids, sampler=sampler,
                                                    generator=torch.Generator().manual_seed(op.steps))
    if pair.reference is not None:
        def reference() -> torch.Tensor:
            videos = pair.reference.detokenize(
                list(chunk_ids.split(1)), timesteps=op.steps, guidance_scale=GUIDANCE, perform_norm_guidance=True,
                norm_threshold=APG_THRESHOLD, eta=0.0, momentum=0.0, verbose=False,
                generator=torch.Generator().manual_seed(op.steps))
            return torch.cat(videos).clamp(-1, 1).float()  # videoflex clamps; the reference does not
        out["reference"] = reference
    return out


def relative_error(ours: torch.Tensor, reference: torch.Tensor) -> float:
    return float((ours - reference).abs().max() / reference.abs().max())


def run_size(size: Size, reference_path: Path | None, operations: tuple[Operation, ...], repeats: int,
             folder: Path) -> dict[str, Any]:
    start = time.perf_counter()
    pair = load_pair(size, reference_path, folder)
    load_s = time.perf_counter() - start
    video = torch.rand(1, 3, 33, size.image, size.image, generator=torch.Generator().manual_seed(123)) * 2 - 1
    ids = pair.ours.tokenize(video)
    per_op = {op.name: calls(pair, op, video, ids) for op in operations}
    parity: dict[str, Any] = {}
    if pair.reference is not None:  # first calls: parity, and the warm-up of both
        for name, fns in per_op.items():
            a, b = fns["videoflex"](), fns["reference"]()
            if name.startswith("tokenize"):
                parity[name] = {"ids_identical": bool(torch.equal(a, b))}
            else:
                parity[name] = {"relative_error": relative_error(a, b)}
        parity["ok"] = all(p.get("ids_identical", True) and p.get("relative_error", 0.0) < TOLERANCE
                           for p in parity.values())
    else:
        for fns in per_op.values():
            fns["videoflex"]()
    times: dict[str, dict[str, list[float]]] = {name: {k: [] for k in fns} for name, fns in per_op.items()}
    for r in range(repeats):
        for name, fns in per_op.items():
            order = sorted(fns, reverse=r % 2 == 1)  # alternate who goes first
            for impl in order:
                t0 = time.perf_counter()
                fns[impl]()
                times[name][impl].append(time.perf_counter() - t0)
    results = {}
    for name, impls in times.items():
        entry: dict[str, Any] = {impl: {"min_s": min(v), "median_s": statistics.median(v), "all_s": v}
                                 for impl, v in impls.items()}
        if "reference" in entry:
            entry["ratio_min"] = entry["reference"]["min_s"] / entry["videoflex"]["min_s"]
            entry["ratio_median"] = entry["reference"]["median_s"] / entry["videoflex"]["median_s"]
        results[name] = entry
    return {"size": dataclasses.asdict(size), "load_s": load_s, "parity": parity, "operations": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", type=Path, help="checkout of the reference code (omit: videoflex alone)")
    parser.add_argument("--sizes", nargs="+", choices=sorted(SIZES), default=["S", "L"])
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per implementation and operation")
    parser.add_argument("--quick", action="store_true",
                        help="a reduced run: size S, 17 frames, 2 repeats (checks the harness, not the claim)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--keep-freed-memory", action="store_true",
                        help="keep freed memory in the process for both implementations, as the videoflex "
                             "command does (videoflex.utils.memory); default: the C library's defaults")
    args = parser.parse_args()
    if args.reference is not None and not (args.reference / "videoflextok" / "wrappers.py").is_file():
        parser.error(f"--reference {args.reference}: no videoflextok/wrappers.py there (a checkout of the "
                     "reference code is expected)")
    if args.threads:
        torch.set_num_threads(args.threads)
    kept = False
    if args.keep_freed_memory:
        from videoflex.utils.memory import keep_freed_memory

        kept = keep_freed_memory()
        if not kept:
            parser.error("--keep-freed-memory: this C library is not glibc (set nothing)")
    sizes, operations, repeats = args.sizes, OPERATIONS, args.repeats
    if args.quick:
        sizes, operations, repeats = ["S"], tuple(op for op in OPERATIONS if op.frames == 17), 2
    # stdout carries the JSON only (the reference prints notices while it builds); the reference's inference
    # runs under no_grad
    with tempfile.TemporaryDirectory() as folder, torch.no_grad(), contextlib.redirect_stdout(sys.stderr):
        results = [run_size(SIZES[s], args.reference, operations, repeats, Path(folder)) for s in sizes]
    print(json.dumps({"benchmark": "vs_reference", "reference": str(args.reference) if args.reference else None,
                      "threads": torch.get_num_threads(), "repeats": repeats, "torch": torch.__version__,
                      "keep_freed_memory": kept,
                      "results": results}, indent=2, allow_nan=False))


if __name__ == "__main__":
    main()
