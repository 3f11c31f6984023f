"""Store a trained model (any kind) with int8 weight matrices, as the shipped checkpoints are.

    python scripts/export_int8.py SRC DST

SRC is a saved model folder (e.g. a run's ``OUT/model``, float32 EMA weights); DST receives
``model.safetensors`` (every weight matrix as int8 rows with a float32 scale each, vectors float32; loaded back
as float32) and ``config.json``. The int8 copy is a different model: its identity (weights hash) differs from
SRC's, so token datasets and generators must be made with DST, and its quality measured on DST.
"""

import sys
from pathlib import Path

import torch

from videoflex import load_model

if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    source, target = Path(sys.argv[1]), Path(sys.argv[2])
    model = load_model(source)
    out = model.save_pretrained(target, dtype=torch.int8)
    stored = load_model(out)
    print(f"wrote {out} ({(out / 'model.safetensors').stat().st_size / 1e6:.1f} MB): {stored.identity}")
