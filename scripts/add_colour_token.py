"""Give a trained flex tokenizer a colour token (``TokenizerConfig.colour_token``), fitted, without training.

    python scripts/add_colour_token.py SOURCE -o OUT [--config configs/demo_256.yaml] [--token 1]

SOURCE is a saved flex tokenizer with temporal prediction and linear paths whose decoder side reads codes (the
demo model's architecture before its colour token). The copy written to OUT has the colour token and FSQ's
full-range restarts (``FSQConfig.full_range_restarts``) switched on, every weight of SOURCE as it was, and the
colour path fitted (:func:`videoflex.tokenizers.flex.pca.fit_colour_path`) to the clips the recipe's linear code
is fitted to (``linear_code_clips`` of the recipe's training clips, chosen with its seed). Weights are stored as
int8 rows (``save_pretrained(dtype=torch.int8)``), as ``scripts/export_demo.py`` stores them: the weights SOURCE
already had come back byte for byte when SOURCE was stored so, which keeps a new revision of a shipped
checkpoint small in the repository's history. Token files made with SOURCE are refused by the copy (another
config). Deterministic: the same SOURCE and recipe give the same file.

The demo model's colour revision was made so from the revision before it::

    git show 6525d1d:checkpoints/demo/model.safetensors > before/model.safetensors
    git show 6525d1d:checkpoints/demo/config.json > before/config.json
    python scripts/add_colour_token.py before -o checkpoints/demo
"""

import argparse
import dataclasses
import sys
from pathlib import Path

import torch

from videoflex import VideoFlexTok
from videoflex.tokenizers.flex.pca import fit_colour_path
from videoflex.train.tasks.tokenizer import linear_code_clips
from videoflex.train.tasks.tokenizer_config import load_train_config

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="a saved flex tokenizer (folder)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="folder to write the copy to")
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "demo_256.yaml",
                        help="training recipe whose linear-code clips the colour path is fitted to")
    parser.add_argument("--token", type=int, default=1, help="the colour token (default 1: colour at k >= 2)")
    args = parser.parse_args(argv)
    source = VideoFlexTok.from_pretrained(args.source)
    config = source.config
    if config.colour_token is not None:
        parser.error(f"{args.source} has a colour token already (token {config.colour_token})")
    try:
        config = dataclasses.replace(config, colour_token=args.token,
                                     fsq=dataclasses.replace(config.fsq, full_range_restarts=True))
    except ValueError as err:
        parser.error(f"{args.source}: {err}")
    recipe = load_train_config(args.config)
    if not recipe.linear_code_clips:
        parser.error(f"{args.config} sets no linear_code_clips: no clips to fit the colour path to")
    model = VideoFlexTok(config).eval()
    loaded = model.load_state_dict(source.state_dict(), strict=False)  # the colour path is new: fitted next
    other = loaded.unexpected_keys + [key for key in loaded.missing_keys if ".colour_" not in key]
    if other:
        parser.error(f"{args.source}: weights that do not fit the copy: {other}")
    fit_colour_path(model, linear_code_clips(recipe, progress=True), progress=True)
    out = model.save_pretrained(args.output, dtype=torch.int8)
    print(f"wrote {out} ({(out / 'model.safetensors').stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
