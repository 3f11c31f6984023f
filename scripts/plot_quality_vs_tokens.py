"""Draw docs/quality_vs_tokens.png: PSNR and SSIM against k (tokens a latent step) for the demo model on the
bundled held-out clip, the numbers ``make demo`` prints.

    python scripts/plot_quality_vs_tokens.py [--metrics outputs/demo/metrics.json] [--linear-code RECIPE]
        [-o docs/quality_vs_tokens.png]

Without ``--metrics`` it runs ``make demo``'s command (``videoflex reconstruct assets/carphone.mp4 --model
checkpoints/demo --keep 1,2,4,...,256``) into a temporary folder and reads the ``metrics.json`` it writes;
with it, it reads that file (``make demo`` writes ``outputs/demo/metrics.json``). For scale it also runs
``scripts/demo_baselines.py`` on the same clip and draws its fixed baselines (the clip's mean colour, 2x2,
4x4 and 8x8 thumbnails per frame) as dashed lines; with ``--linear-code RECIPE`` (e.g.
``configs/demo_256.yaml``: its clip cache, built first if missing) also the linear code of the model's budget
at every k, the curve the model is measured against (grey, dotted).
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

ROOT = Path(__file__).resolve().parents[1]
CLIP, MODEL, KEEP = "assets/carphone.mp4", "checkpoints/demo", "1,2,4,8,16,32,64,128,256"  # as `make demo`
BASELINES = ("mean colour of the clip", "2x2 thumbnail per frame", "4x4 thumbnail per frame",
             "8x8 thumbnail per frame")


def run_demo(out: Path) -> dict:
    videoflex = Path(sys.executable).parent / "videoflex"
    subprocess.run([str(videoflex), "reconstruct", CLIP, "--model", MODEL, "--keep", KEEP, "-o", str(out),
                    "--quiet"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return json.loads((out / "metrics.json").read_text())


def run_baselines(linear_code: str | None) -> tuple[dict[str, tuple[float, float]], dict[int, tuple[float, float]]]:
    """Fixed baseline name -> (PSNR, SSIM), and (with ``linear_code``) k -> the linear code's (PSNR, SSIM), from
    the table scripts/demo_baselines.py prints."""
    command = [sys.executable, str(ROOT / "scripts" / "demo_baselines.py"), CLIP]
    if linear_code:
        command += ["--linear-code", linear_code, "--model", MODEL]
    done = subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True)
    found, code = {}, {}
    for line in done.stdout.splitlines():
        for name in BASELINES:
            if line.startswith(name):
                _, psnr, ssim = line[len(name):].split()
                found[name] = (float(psnr), float(ssim))
        if line.startswith("linear code, k = "):
            k, _, psnr, ssim = line[len("linear code, k = "):].split()
            code[int(k)] = (float(psnr), float(ssim))
    if set(found) != set(BASELINES):
        raise SystemExit(f"scripts/demo_baselines.py printed no line for {sorted(set(BASELINES) - set(found))}")
    return found, code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--metrics", type=Path, help="metrics.json of a make demo run (default: run it now)")
    parser.add_argument("--linear-code", metavar="RECIPE", help="also draw the linear code of the model's budget, "
                        "fitted on RECIPE's training clips (scripts/demo_baselines.py --linear-code)")
    parser.add_argument("-o", "--output", type=Path, default=ROOT / "docs" / "quality_vs_tokens.png")
    args = parser.parse_args()
    if args.metrics is None:
        with tempfile.TemporaryDirectory(prefix="quality-vs-tokens-") as tmp:
            metrics = run_demo(Path(tmp))
    else:
        metrics = json.loads(args.metrics.read_text())
    if (metrics["input"], metrics["model"]) != (CLIP, MODEL):
        raise SystemExit(f"{args.metrics}: reconstructs {metrics['input']} with {metrics['model']}, not {CLIP} "
                         f"with {MODEL} as make demo does")
    baselines, code = run_baselines(args.linear_code)
    results = metrics["results"]
    keeps = [r["keep"] for r in results]
    fig, axes = plt.subplots(1, 2, figsize=(9.6, 3.7))
    for ax, (field, label, column) in zip(axes, (("psnr", "PSNR (dB)", 0), ("ssim", "SSIM", 1))):
        values = [r[field] for r in results]
        ax.plot(keeps, values, marker="o", color="#2B5D8C", lw=2, label=f"{metrics['model_name']} model", zorder=3)
        for k, v in zip(keeps, values):
            ax.annotate(f"{v:.2f}" if field == "psnr" else f"{v:.3f}", (k, v), textcoords="offset points",
                        xytext=(0, 7), ha="center", fontsize=7.5)
        if code:
            ks = [k for k in keeps if k in code]
            ax.plot(ks, [code[k][column] for k in ks], marker=".", color="#777777", lw=1.2, ls=":", zorder=2,
                    label="linear code, same budget")
        ax.legend(fontsize=7.5, loc="upper left")
        for i, name in enumerate(BASELINES):
            ax.axhline(baselines[name][column], color="#999999", lw=0.9, ls=(0, (4, 2 + i)), zorder=1)
            ax.text(keeps[-1] * 1.35, baselines[name][column], name.replace(" per frame", "").replace(" of the clip", ""),
                    va="center", fontsize=7, color="#555555", bbox={"fc": "white", "ec": "none", "pad": 0.5})
        ax.set_xscale("log", base=2)
        ax.set_xticks(keeps, [f"{k}\n({k * metrics['token_steps']})" for k in keeps], fontsize=7)
        ax.set_xlim(keeps[0] / 1.4, keeps[-1] * 4.5)
        ax.set_xlabel("k tokens a latent step (tokens for the clip)", fontsize=8.5)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{metrics['model']} on {metrics['input']} (held out): {metrics['frames']} frames at "
                 f"{metrics['size'][0]}x{metrics['size'][1]}, {metrics['steps']} {metrics['method']} step, "
                 f"seed {metrics['seed']}; dashed: fixed baselines", fontsize=9)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=90, format="png", metadata={"Software": None})
    plt.close(fig)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_bytes(buffer.getvalue())
    table = ", ".join(f"k={r['keep']}: {r['psnr']:.2f} dB / {r['ssim']:.3f}" for r in results)
    print(f"wrote {args.output} ({len(buffer.getvalue()) / 1000:.0f} kB): {table}")


if __name__ == "__main__":
    main()
