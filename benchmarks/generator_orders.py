"""Step-major vs rank-major token order at equal compute (prints one JSON object; writes a PNG figure).

Trains two class-conditional generators with the same recipe and the same number of optimiser steps, one per
token order (``videoflex train generator ... order=step_major|rank_major``), then scores each with
``videoflex eval generator`` on the same real clips (gFVD, class score). Both orders see the same ids in every
step and spend the same FLOPs per step (the same model and sequence length), so the comparison is at equal
compute. The held-out next-id loss is comparable too: summed over a clip it is ``-log p(clip)`` whatever the
order of the factorisation.

    .venv/bin/python benchmarks/generator_orders.py --recipe configs/generator_shapes_class.yaml \\
        --model ar-2xs --steps 600 --out outputs/orders

Everything the recipe names (token datasets, tokenizer) must exist (see the recipe's header). The eval's real
clips are given as prepare-data source options after ``--`` (default: the recipe's shapes, 128 clips of seed 2).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from _measure import videoflex

ORDERS = ("step_major", "rank_major")


def last_val_loss(run: Path) -> float:
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    losses = [r["val_loss"] for r in records if "val_loss" in r]
    if not losses:
        raise SystemExit(f"{run}/log.jsonl has no val_loss: the recipe needs eval_data")
    return losses[-1]


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = (("val_loss", "held-out loss (nats / id)"), ("gfvd", "gFVD"), ("class_score", "class score"),
               ("top1", "class top-1"))
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.0 * len(metrics), 2.8))
    for ax, (key, label) in zip(axes, metrics):
        values = [results[order][key] for order in ORDERS]
        ax.bar(range(len(ORDERS)), values, color=["#4477aa", "#ee6677"])
        ax.set_xticks(range(len(ORDERS)), [o.replace("_", "-") for o in ORDERS])
        ax.set_title(label, fontsize=9)
        for i, v in enumerate(values):
            ax.text(i, v, f"{v:.3g}", ha="center", va="bottom", fontsize=8)
    fig.suptitle(f"{results['model']}, {results['steps']} steps each (same data, seed, FLOPs)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="configs/generator_shapes_class.yaml")
    parser.add_argument("--model", default="ar-2xs", help="generator preset of both runs")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--samples-per-class", type=int, default=8)
    parser.add_argument("--cfg", type=float, default=3.0)
    parser.add_argument("--out", type=Path, default=Path("outputs/orders"))
    parser.add_argument("real", nargs="*", help="prepare-data source options of the real clips (after --)")
    args = parser.parse_args()
    real = args.real or ["--source", "shapes", "--label-by", "motion", "--count", "128", "--seed", "2",
                         "--frames", "17", "--size", "32"]
    results: dict = {"model": args.model, "steps": args.steps, "recipe": args.recipe, "real": real}
    for order in ORDERS:
        run = args.out / order
        start = time.perf_counter()
        videoflex("train", "generator", "--config", args.recipe, "--quiet", f"model={args.model}", f"order={order}",
                  f"steps={args.steps}", f"out_dir={run}", f"eval_every={args.steps}", "eval_samples=0")
        train_s = time.perf_counter() - start
        videoflex("eval", "generator", "--model", str(run / "model"), "--samples-per-class",
                  str(args.samples_per_class), "--cfg", str(args.cfg), "--quiet", "-o", str(run / "eval"), *real)
        scores = json.loads((run / "eval" / "results.json").read_text())["scores"]
        results[order] = {"val_loss": last_val_loss(run), "gfvd": scores["gfvd"],
                          "class_score": scores["classes"]["mean_prob"], "top1": scores["classes"]["top1"],
                          "chance": scores["classes"]["chance"], "train_seconds": round(train_s, 1)}
    figure = args.out / "orders.png"
    plot(results, figure)
    results["figure"] = str(figure)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
