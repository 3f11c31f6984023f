"""The shipped demo model (``checkpoints/demo``) on the bundled held-out clip, as ``make demo`` runs it."""

import json
from pathlib import Path

from videoflex import VideoFlexTok, load_model
from videoflex.cli.main import main

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_demo_model_reconstructs_the_held_out_clip_coarse_to_fine(tmp_path):
    model = VideoFlexTok.from_pretrained(ROOT / "checkpoints" / "demo")  # the earlier file format, unchanged
    assert model.config.name == "demo" and model.num_registers == 32 and model.kind == "flex-tokenizer"
    assert load_model(ROOT / "checkpoints" / "demo").identity == model.identity
    out = tmp_path / "demo"
    assert main(["reconstruct", str(ROOT / "assets" / "carphone.mp4"), "--model", str(ROOT / "checkpoints" / "demo"),
                 "--keep", "1,4,32", "-o", str(out), "--quiet"]) == 0
    rows = {r["keep"]: r for r in json.loads((out / "metrics.json").read_text())["results"]}
    # the model card's table (13.74 / 15.70 / 16.65 dB); the clip's mean colour gives 12.61 dB / SSIM 0.178
    assert rows[1]["psnr"] > 13.0 and rows[1]["ssim"] > 0.178
    assert rows[1]["psnr"] + 1.0 < rows[4]["psnr"] < rows[32]["psnr"] - 0.5
    assert abs(rows[32]["psnr"] - 16.65) < 0.1
    report = json.loads((out / "metrics.json").read_text())
    assert (report["model_name"], report["model_weights_hash"]) == ("demo", model.identity.weights_hash)
