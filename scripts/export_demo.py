"""Export the trained demo model to ``checkpoints/demo`` (int8 weights, named ``demo``, the preset's sampler).

    python scripts/export_demo.py [runs/demo_256/model]

``videoflex train tokenizer --config configs/demo_256.yaml`` writes the EMA weights to ``runs/demo_256/model``
(float32, with the sampler settings of the ``flex-demo-256`` preset when training started). This stores every
weight matrix as int8 rows with a float32 scale each (loaded back as float32; the PSNR/SSIM table of ``make
demo`` of both is in ``checkpoints/demo/README.md``), names the model ``demo`` (``videoflex inspect`` shows it;
a preset's name is never a shipped model's) and takes the current ``flex-demo-256`` preset's sampler (one Euler
step, no guidance; see the preset's docstring).
"""

import dataclasses
import sys
from pathlib import Path

import torch

from videoflex import VideoFlexTok, get_preset

ROOT = Path(__file__).resolve().parents[1]

if __name__ == "__main__":
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "runs" / "demo_256" / "model"
    model = VideoFlexTok.from_pretrained(source)
    if model.config.num_registers != get_preset("flex-demo-256").num_registers:
        raise SystemExit(f"error: {source} is not a flex-demo-256 model ({model.config.num_registers} tokens a step)")
    model.config = dataclasses.replace(model.config, name="demo", sampler=get_preset("flex-demo-256").sampler)
    out = model.save_pretrained(ROOT / "checkpoints" / "demo", dtype=torch.int8)
    print(f"wrote {out} ({(out / 'model.safetensors').stat().st_size / 1e6:.1f} MB)")
