"""Export the trained demo model to ``checkpoints/demo`` (int8 weights, the preset's sampler defaults).

    python scripts/export_demo.py [runs/demo_stills/model]

The demo recipes (``configs/demo.yaml``, then ``configs/demo_stills.yaml``) write the EMA weights to
``runs/demo_stills/model`` (float32, 27 MB, with the sampler settings of the preset when training
started). This stores every weight matrix as int8 rows with a float32 scale each (7 MB; loaded back as
float32; on the held-out clip the PSNR/SSIM table of ``make demo`` matched the bfloat16 export's to
0.01 dB and 0.001) with the current ``flex-demo`` preset's sampler (one Euler step, no guidance; see the
preset's docstring).
"""

import dataclasses
import sys
from pathlib import Path

import torch

from videoflex import VideoFlexTok, get_preset

ROOT = Path(__file__).resolve().parents[1]

if __name__ == "__main__":
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "runs" / "demo_stills" / "model"
    model = VideoFlexTok.from_pretrained(source)
    model.config = dataclasses.replace(model.config, sampler=get_preset("flex-demo").sampler)
    out = model.save_pretrained(ROOT / "checkpoints" / "demo", dtype=torch.int8)
    print(f"wrote {out} ({(out / 'model.safetensors').stat().st_size / 1e6:.1f} MB)")
