"""Flex (coarse-to-fine, 1D per step) vs grid (one token per latent patch) tokens for class-conditional AR
generation at equal training compute (issue 17, items 2 and 3).

What it measures, on one labelled dataset (synthetic shapes labelled by motion, 32x32, 17 frames):

1. a flex tokenizer and a grid tokenizer of matched size (default flex-shapes 2.29M / grid-shapes 2.33M),
   trained on the same clips for the same steps (recipes OUT/recipes/tok-*.yaml, written from
   configs/shapes.yaml); their reconstruction PSNR, SSIM and rFVD on ``real_clips`` held-out clips (the
   real clips of the generators' gFVD; :func:`videoflex.eval.sweep.run_sweep`, as ``videoflex eval recon``
   does for video files; OUT/tokenizers/NAME/recon/results.json), flex at k = 1, the budgets and N, grid at
   its N only;
2. each tokenizer's token dataset (``videoflex tokenize-dataset``, labelled), and class-conditional AR
   generators of several sizes (``--sizes``) on flex ids at several budgets (``--budgets``, ids per latent
   step: the recipe's ``budget``) and on grid ids (all N of a step), every size and token type for the SAME
   training FLOPs (each target of ``--generator-flops``). Training FLOPs per optimiser step are
   ``6 * P * tokens_per_clip * batch`` (forward + backward of a dense transformer, Kaplan et al. 2020),
   with P the parameters that do matmuls on every token (the blocks and the output head; the embeddings are
   lookups) and tokens_per_clip = latent steps x ids per step; attention's own FLOPs (sequence length <= a
   few hundred) are left out. Each run trains ``ceil(target / flops_per_step)`` steps, so runs match within
   one step;
3. ``videoflex eval generator`` of each: gFVD, class score (mean probability of the asked class) and top-1
   of the I3D linear probe, tokens per clip, training FLOPs, seconds per generated clip (the eval's wall
   time over its generated clips: sampling, decoding, I3D of generated and real clips, the probe; the same
   work for every row, so comparable between rows, an upper bound on sampling alone);
4. item 3: ids per 81-frame clip of each tokenizer and the wall time of one 81-frame ``videoflex generate``
   with the first generator (first of ``--sizes``, first FLOPs target) of each token type (the command's
   wall time: process start, loading, sampling with the sliding window, decoding, writing the mp4).

Writes OUT/results.json, OUT/table.md, OUT/quality_vs_compute.png (class score and gFVD against training
FLOPs, every run a point, one line per token type through the best size at each FLOPs target) and
OUT/commands.sh (every command it ran, in order, to reproduce any row).
Every stage is skipped when its output exists (rerun the same command to resume).

    .venv/bin/python benchmarks/flex_vs_grid.py --smoke --out outputs/flex_vs_grid_smoke   # minutes, CPU
    .venv/bin/python benchmarks/flex_vs_grid.py --out outputs/flex_vs_grid                  # about 2 h, CPU
    .venv/bin/python benchmarks/flex_vs_grid.py --device cuda --tokenizer-steps 5000 \\
        --generator-flops 1e15,1e16,1e17 --sizes ar-2xs,ar-xs,ar-s,ar-m --budgets 4,16 \\
        --out outputs/flex_vs_grid_gpu

(the last line is the GPU configuration: the same stages, longer tokenizer training, more compute and sizes).
The default run took 1 h 52 min on the 2-core CPU this repository is developed on (AVX-512 bf16; 2 threads),
plus about 10 min for the tokenizers' reconstruction stage; the README gives its table and figure.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shlex
import time
from pathlib import Path

import yaml
from _measure import videoflex

SHAPES = ["--source", "shapes", "--label-by", "motion", "--frames", "17", "--size", "32"]
"""The labelled dataset: synthetic shapes, one class per motion direction (8), 32x32, 17 frames."""


@dataclasses.dataclass(frozen=True)
class Settings:
    """Sizes of one comparison (``--smoke`` or the full default)."""

    flex: str
    grid: str
    tokenizer_steps: int
    tokenizer_clips: int
    token_clips: int
    eval_token_clips: int
    sizes: tuple[str, ...]
    budgets: tuple[int, ...]
    generator_flops: tuple[float, ...]
    batch: int
    samples_per_class: int
    real_clips: int


FULL = Settings(flex="flex-shapes", grid="grid-shapes", tokenizer_steps=1500, tokenizer_clips=8000,
                token_clips=8000, eval_token_clips=256, sizes=("ar-2xs", "ar-xs", "ar-s"), budgets=(4, 16),
                generator_flops=(1e13, 4e13), batch=32, samples_per_class=8, real_clips=128)
SMOKE = Settings(flex="flex-tiny", grid="grid-tiny", tokenizer_steps=20, tokenizer_clips=64, token_clips=128,
                 eval_token_clips=32, sizes=("ar-debug", "ar-2xs"), budgets=(4, 16), generator_flops=(2e11,),
                 batch=16, samples_per_class=1, real_clips=16)


def generator_parameters(preset: str, vocab: int, tokens_per_step: int, steps: int, classes: int) -> dict:
    """Parameter counts (embed, blocks, head) of ``preset`` as the generator task builds it for this data."""
    import torch

    from videoflex.generators.ar.model import ARGenerator
    from videoflex.registry import PRESETS

    config = dataclasses.replace(PRESETS[preset].config(), vocab_size=vocab, tokens_per_step=tokens_per_step,
                                 max_steps=steps, num_classes=classes, class_names=())
    with torch.device("meta"):
        model = ARGenerator(config)
    return {part.name: part.parameters for part in model.parameter_parts()}


def model_parameters(preset: str) -> int:
    """All parameters of a preset (built on the meta device)."""
    import torch

    from videoflex.registry import PRESETS

    entry = PRESETS[preset]
    with torch.device("meta"):
        model = entry.kind.model_class(entry.config())
    return sum(p.numel() for p in model.parameters())


def flops_per_step(matmul_parameters: int, tokens_per_clip: int, batch: int) -> float:
    """Training FLOPs of one optimiser step: 6 x parameters x tokens (forward 2, backward 4)."""
    return 6.0 * matmul_parameters * tokens_per_clip * batch


def steps_for(target_flops: float, per_step: float) -> int:
    """Optimiser steps whose FLOPs first reach ``target_flops`` (at least 1)."""
    return max(1, math.ceil(target_flops / per_step))


def write_yaml(path: Path, recipe: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def resume(run: Path) -> list[str]:
    """``--resume`` when an interrupted run left checkpoints in ``run``."""
    return ["--resume"] if (run / "checkpoints").is_dir() and any((run / "checkpoints").iterdir()) else []


def tokenizer_recipe(out: Path, name: str, preset: str, s: Settings, device: str) -> Path:
    recipe = yaml.safe_load(Path("configs/shapes.yaml").read_text())
    recipe.update(out_dir=str(out / "tokenizers" / name), model=preset, steps=s.tokenizer_steps,
                  save_every=s.tokenizer_steps, eval_every=s.tokenizer_steps, device=device)
    recipe["optim"]["warmup_steps"] = min(recipe["optim"]["warmup_steps"], max(1, s.tokenizer_steps // 10))
    recipe["data"]["train"] = [{"kind": "shapes", "count": s.tokenizer_clips, "seed": 1}]
    return write_yaml(out / "recipes" / f"tok-{name}.yaml", recipe)


def reconstruction(run: Path, s: Settings, device: str) -> dict:
    """PSNR, SSIM and rFVD of the trained tokenizer in ``run`` at k = 1, the generators' budgets and N ids a
    step (flex; grid: N only, a grid's prefix does not decode), on the ``s.real_clips`` real clips of the
    generators' gFVD (shapes, seed 2), decoded with the model's own flow steps and seed 0; written to
    ``run/recon`` by ``save_sweep`` (reused when there)."""
    out = run / "recon"
    if not (out / "results.json").exists():
        import torch

        from videoflex.data.shapes import ShapesConfig, ShapesDataset
        from videoflex.eval.i3d_weights import load_i3d
        from videoflex.eval.sweep import SweepSettings, run_sweep, save_sweep
        from videoflex.registry import load_model

        model = load_model(run / "model", device=device).eval()
        n = model.layout.tokens_per_step
        keeps = sorted({1, *(b for b in s.budgets if b < n), n}) if model.layout.prefix_decodable else [n]
        data = ShapesDataset(ShapesConfig(num_samples=s.real_clips, num_frames=17, size=32, label_by="motion",
                                          seed=2))
        clips = torch.stack([data[i].video for i in range(len(data))]).to(device)
        settings = SweepSettings.for_model(model, tuple(keeps), batch_size=16)
        save_sweep(run_sweep(model, clips, settings, load_i3d(device=device), progress=False), out)
    sweep = json.loads((out / "results.json").read_text())
    return {f"{metric}_k{r['keep']}": round(r[metric], 4) for r in sweep["results"]
            for metric in ("psnr", "ssim", "rfvd")} | {"clips": sweep["num_clips"],
                                                        "seconds": round(sweep["wall_time_s"], 1)}


def timed(run: Path, stage: str, command: list[str] | None, log: list[str]) -> float:
    """Run ``videoflex *command`` and record its wall time in ``run/seconds.json`` under ``stage``; with
    ``command=None`` (the stage's output exists), the time recorded when it ran (NaN if none was)."""
    path = run / "seconds.json"
    times = json.loads(path.read_text()) if path.exists() else {}
    if command is not None:
        began = time.perf_counter()
        videoflex(*command, log=log)
        times[stage] = round(time.perf_counter() - began, 1)
        path.write_text(json.dumps(times))
    return times.get(stage, float("nan"))


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, axes = plt.subplots(1, 2, figsize=(8.0, 3.2))
    for ax, key, label in ((axes[0], "class_score", "class score"), (axes[1], "gfvd", "gFVD (lower is better)")):
        best = max if key == "class_score" else min
        for token_type in dict.fromkeys(r["tokens"] for r in rows):
            runs = [r for r in rows if r["tokens"] == token_type]
            frontier = [best((r for r in runs if r["flops_target"] == f), key=lambda r: r[key])
                        for f in sorted({r["flops_target"] for r in runs})]
            line = ax.plot([r["train_flops"] for r in frontier], [r[key] for r in frontier], marker="o",
                           label=token_type)[0]
            ax.scatter([r["train_flops"] for r in runs], [r[key] for r in runs], color=line.get_color(), s=10,
                       alpha=0.5)
            for r in runs:
                ax.annotate(r["model"], (r["train_flops"], r[key]), fontsize=6)
        ax.set_xscale("log")
        if key == "gfvd":  # spans an order of magnitude between under- and well-trained runs
            ax.set_yscale("log")
        targets = sorted({r["flops_target"] for r in rows})
        ax.set_xticks(targets, [f"{t:.0e}" for t in targets])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("training FLOPs (6 P D)")
        ax.set_title(label, fontsize=9)
    axes[0].axhline(rows[0]["chance"], color="grey", lw=0.8, ls="--")
    axes[0].legend(fontsize=7)
    fig.suptitle("class-conditional AR generators on shapes (motion); line: the best size at each FLOPs target",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def table(results: dict) -> str:
    lines = ["| tokenizer | params | ids/step | PSNR (dB) | SSIM | rFVD |", "|---|---|---|---|---|---|"]
    for name, t in results["tokenizers"].items():
        r = t["recon"]
        for k in sorted(int(key[len("psnr_k"):]) for key in r if key.startswith("psnr_k")):
            lines.append(f"| {name} ({t['preset']}) | {t['parameters']:,} | {k} | {r[f'psnr_k{k}']:.2f} "
                         f"| {r[f'ssim_k{k}']:.3f} | {r[f'rfvd_k{k}']:.1f} |")
    lines += ["", f"(reconstructions of {r['clips']} held-out clips, the generators' real clips)"]
    header = ("| tokens | generator | params (blocks+head) | tokens/clip | steps | train FLOPs | gFVD "
              "| class score | top-1 | s/clip (eval) |")
    lines += ["", header, "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results["generators"]:
        lines.append(f"| {r['tokens']} | {r['model']} | {r['matmul_parameters']:,} | {r['tokens_per_clip']} "
                     f"| {r['steps']} | {r['train_flops']:.3g} | {r['gfvd']:.1f} | {r['class_score']:.3f} "
                     f"| {r['top1']:.3f} | {r['eval_seconds_per_clip']:.2f} |")
    lines += ["", f"chance: {results['generators'][0]['chance']:.3f}", "",
              "| tokens | ids per 17-frame clip | ids per 81-frame clip | one 81-frame generation (s) |",
              "|---|---|---|---|"]
    for name, r in results["long"].items():
        lines.append(f"| {name} | {r['ids_17']} | {r['ids_81']} | {r['generate_81_seconds']:.1f} "
                     f"({r['generator']}) |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("outputs/flex_vs_grid"))
    parser.add_argument("--smoke", action="store_true", help="tiny tokenizers, few steps and clips (minutes)")
    parser.add_argument("--tokenizer-steps", type=int)
    parser.add_argument("--generator-flops", help="training FLOPs targets, comma-separated: every size and token "
                        "type is trained once per target")
    parser.add_argument("--sizes", help="generator presets, comma-separated (videoflex presets)")
    parser.add_argument("--budgets", help="flex ids per latent step, comma-separated")
    parser.add_argument("--cfg", type=float, default=3.0, help="classifier-free guidance of eval and generate "
                        "(3.0: the shipped class generator's)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    s = SMOKE if args.smoke else FULL
    s = dataclasses.replace(
        s, tokenizer_steps=args.tokenizer_steps or s.tokenizer_steps,
        generator_flops=tuple(float(f) for f in args.generator_flops.split(",")) if args.generator_flops
        else s.generator_flops,
        sizes=tuple(args.sizes.split(",")) if args.sizes else s.sizes,
        budgets=tuple(int(b) for b in args.budgets.split(",")) if args.budgets else s.budgets)
    out, dev = args.out, ["--device", args.device]
    commands: list[str] = []
    results: dict = {"settings": dataclasses.asdict(s), "cfg": args.cfg, "device": args.device, "tokenizers": {},
                     "generators": [], "long": {},
                     "flops": "6 x (blocks + head parameters) x tokens per clip x batch per step"}
    start = time.perf_counter()

    # 1-2. tokenizers and their token datasets
    tokens: dict[str, Path] = {}
    for name, preset in (("flex", s.flex), ("grid", s.grid)):
        run = out / "tokenizers" / name
        recipe = tokenizer_recipe(out, name, preset, s, args.device)
        train = ["train", "tokenizer", "--config", str(recipe), "--quiet"]
        if not (run / "model" / "model.safetensors").exists():
            seconds = timed(run, "train", [*train, *resume(run)], commands)
        else:
            seconds = timed(run, "train", None, commands)
            commands.append(shlex.join(["videoflex", *train]))
        results["tokenizers"][name] = {"preset": preset, "parameters": model_parameters(preset),
                                       "train_seconds": seconds, "recon": reconstruction(run, s, args.device)}
        for split, count, seed in (("train", s.token_clips, 1), ("eval", s.eval_token_clips, 2)):
            folder = out / "tokens" / f"{name}-{split}"
            cmd = ["tokenize-dataset", *SHAPES, "--count", str(count), "--seed", str(seed), "--model",
                   str(run / "model"), "-o", str(folder), "--quiet", *dev]
            if not (folder / "index.json").exists():
                videoflex(*cmd, log=commands)
            else:
                commands.append(shlex.join(["videoflex", *cmd]))
        tokens[name] = out / "tokens" / name
    print(f"tokenizers and token data: {time.perf_counter() - start:.0f} s", flush=True)

    # 2-3. generators at equal training FLOPs, then their evaluation
    types = [(f"flex-k{b}", "flex", b) for b in s.budgets] + [("grid", "grid", 0)]
    real = [*SHAPES, "--count", str(s.real_clips), "--seed", "2"]
    smallest: dict[str, Path] = {}
    for token_type, name, budget in types:
        info = json.loads((out / "tokens" / f"{name}-train" / "index.json").read_text())
        k = budget or info["tokens_per_step"]
        if k > info["tokens_per_step"]:
            raise SystemExit(f"budget {k}: the {name} tokenizer has {info['tokens_per_step']} ids per step")
        tokens_per_clip = info["token_steps"] * k
        for size, target in ((z, f) for f in s.generator_flops for z in s.sizes):
            parts = generator_parameters(size, info["codebook_size"], k, info["token_steps"],
                                         len(info["class_names"]))
            matmul = parts["blocks"] + parts["head"]
            per_step = flops_per_step(matmul, tokens_per_clip, s.batch)
            steps = steps_for(target, per_step)
            run = out / "generators" / f"{token_type}-{size}-{target:.0e}"
            recipe = yaml.safe_load(Path("configs/generator_shapes_class.yaml").read_text())
            recipe.update(out_dir=str(run), model=size, data=str(out / "tokens" / f"{name}-train"),
                          eval_data=str(out / "tokens" / f"{name}-eval"), tokenizer=str(out / "tokenizers" / name
                                                                                      / "model"),
                          budget=budget, steps=steps, batch_size=s.batch, save_every=steps, eval_every=steps,
                          eval_samples=0, device=args.device)
            recipe["optim"]["warmup_steps"] = min(recipe["optim"]["warmup_steps"], max(1, steps // 10))
            path = write_yaml(out / "recipes" / f"gen-{run.name}.yaml", recipe)
            train = ["train", "generator", "--config", str(path), "--quiet"]
            if not (run / "model" / "model.safetensors").exists():
                train_s = timed(run, "train", [*train, *resume(run)], commands)
            else:
                train_s = timed(run, "train", None, commands)
                commands.append(shlex.join(["videoflex", *train]))
            evaluate = ["eval", "generator", "--model", str(run / "model"), "--samples-per-class",
                        str(s.samples_per_class), "--cfg", str(args.cfg), "--quiet", "-o", str(run / "eval"), *dev,
                        *real]
            if not (run / "eval" / "results.json").exists():
                videoflex(*evaluate, log=commands)
            else:
                commands.append(shlex.join(["videoflex", *evaluate]))
            ev = json.loads((run / "eval" / "results.json").read_text())
            sc = ev["scores"]
            results["generators"].append({
                "tokens": token_type, "model": size, "flops_target": target, "parameters": parts,
                "matmul_parameters": matmul,
                "ids_per_step": k, "tokens_per_clip": tokens_per_clip, "batch": s.batch, "steps": steps,
                "flops_per_step": per_step, "train_flops": per_step * steps, "train_seconds": round(train_s, 1),
                "gfvd": sc["gfvd"], "class_score": sc["classes"]["mean_prob"], "top1": sc["classes"]["top1"],
                "chance": sc["classes"]["chance"], "generated_clips": sc["generated_clips"],
                "real_clips": sc["real_clips"],
                "eval_seconds_per_clip": ev["wall_time_s"] / sc["generated_clips"]})
            smallest.setdefault(token_type, run)
        print(f"{token_type} generators done: {time.perf_counter() - start:.0f} s", flush=True)

    # item 3: ids per 81-frame clip and one 81-frame generation per token type
    for token_type, run in smallest.items():
        config = json.loads((run / "model" / "config.json").read_text())["config"]
        k, steps17 = config["tokens_per_step"], config["max_steps"]
        steps81 = 1 + (81 - 1) * (steps17 - 1) // (17 - 1)
        video = run / "long-81.mp4"
        cmd = ["generate", "--model", str(run / "model"), "--class", "0", "--frames", "81", "-o", str(video),
               "--seed", "0", "--cfg", str(args.cfg), "--quiet", *dev]
        began = time.perf_counter()
        videoflex(*cmd, log=commands)
        results["long"][token_type] = {"generator": run.name, "ids_17": steps17 * k, "ids_81": steps81 * k,
                                       "generate_81_seconds": round(time.perf_counter() - began, 2)}

    results["wall_seconds"] = round(time.perf_counter() - start, 1)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    (out / "table.md").write_text(table(results))
    (out / "commands.sh").write_text("#!/bin/sh\n# commands run by benchmarks/flex_vs_grid.py, in order\n"
                                     + "\n".join(commands) + "\n")
    plot(results["generators"], out / "quality_vs_compute.png")
    print(table(results))
    print(f"wrote {out}/results.json, table.md, quality_vs_compute.png, commands.sh ({results['wall_seconds']} s)")


if __name__ == "__main__":
    main()
