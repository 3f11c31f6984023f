"""Export the trained demo model to ``checkpoints/demo`` (bfloat16, the preset's sampler defaults).

    python scripts/export_demo.py [runs/demo/model]

The demo recipe (``configs/demo.yaml``) writes the EMA weights to ``runs/demo/model`` (float32, 27 MB,
with the sampler settings of the preset when training started). This stores them in bfloat16 (14 MB;
loaded back as float32) with the current ``demo`` preset's sampler (one Euler step, no guidance; see
the preset's docstring).
"""

import dataclasses
import sys
from pathlib import Path

import torch

from videoflex import VideoFlexTok, get_preset

ROOT = Path(__file__).resolve().parents[1]

if __name__ == "__main__":
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "runs" / "demo" / "model"
    model = VideoFlexTok.from_pretrained(source)
    model.config = dataclasses.replace(model.config, sampler=get_preset("demo").sampler)
    out = model.save_pretrained(ROOT / "checkpoints" / "demo", dtype=torch.bfloat16)
    print(f"wrote {out} ({(out / 'model.safetensors').stat().st_size / 1e6:.1f} MB)")
