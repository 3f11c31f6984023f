"""Draw docs/token_layout.png: the flex tokenizer's token layout per latent step and its attention masks.

    python scripts/draw_token_layout.py [-o docs/token_layout.png]

Everything drawn is taken from the code, not retyped: a tiny flex tokenizer (the ``flex-tiny`` preset at
16x16 pixels with 3 registers: 4 patches and 3 tokens per latent step) tokenizes a random 9-frame clip
(3 latent steps) and decodes it from k = 2 tokens a step, while the masks that its encoder and decoder
pass to attention (``videoflex.nn.masks.dense_mask``) are recorded. The layout of each step's sequence
comes from those calls (how many positions of each part, which part first), the register positions the
decoder replaces by the nested-dropout mask token from ``Decoder.embed_tokens``, and the matrices are the
recorded masks themselves (rows: queries, columns: keys; True = attends).
"""

from __future__ import annotations

import argparse
import dataclasses
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from matplotlib.colors import ListedColormap
from matplotlib.patches import FancyArrowPatch, Rectangle

import videoflex.tokenizers.flex.decoder as decoder_module
import videoflex.tokenizers.flex.encoder as encoder_module
from videoflex.nn import masks
from videoflex.tokenizers.flex.model import VideoFlexTok
from videoflex.tokenizers.flex.presets import tiny

ROOT = Path(__file__).resolve().parents[1]
FRAMES, SIZE, REGISTERS, KEEP = 9, 16, 3, 2  # -> 3 latent steps of 4 patches (4x4 latents, patch 2) + 3 registers
PATCH, REGISTER, DROPPED = "#4C8BC9", "#E8912D", "#BBBBBB"
STEP_COLOURS = ("#F3F6FA", "#FDF3E7", "#EEF6EE")


def record():
    """Run the tiny tokenizer and return the recorded encoder/decoder masks and the dropped register positions."""
    config = dataclasses.replace(tiny(), name="layout", image_size=(SIZE, SIZE), num_registers=REGISTERS)
    torch.manual_seed(0)
    model = VideoFlexTok(config).eval()
    calls = {}

    def recorder(part):
        def dense_mask(kind, steps, n_first, n_second, device):
            mask = masks.dense_mask(kind, steps, n_first, n_second, device)
            calls[part] = (kind, steps, n_first, n_second, mask)
            return mask
        return dense_mask

    encoder_module.dense_mask, decoder_module.dense_mask = recorder("encoder"), recorder("decoder")
    try:
        video = torch.rand(1, 3, FRAMES, SIZE, SIZE, generator=torch.Generator().manual_seed(0)) * 2 - 1
        with torch.no_grad():
            ids = model.tokenize(video, generator=torch.Generator().manual_seed(0))  # [1, t, N]
            model.detokenize(ids, keep=KEEP, num_frames=FRAMES, generator=torch.Generator().manual_seed(0))
            registers = model.decoder.embed_tokens(model.fsq.ids_to_codes(ids), KEEP)  # [1, t, N, D]
    finally:
        encoder_module.dense_mask, decoder_module.dense_mask = masks.dense_mask, masks.dense_mask
    token = model.decoder.nested_mask_token
    dropped = [bool((registers[0, 0, i] == token).all()) for i in range(REGISTERS)]
    patches = (config.latent_size[0] // config.encoder.patch_size) * (config.latent_size[1] // config.encoder.patch_size)
    enc, dec = calls["encoder"], calls["decoder"]
    # the encoder lays a step out [patches | registers], the decoder [registers | patches] (their forward())
    assert enc[1:4] == (ids.shape[1], patches, REGISTERS) and dec[1:4] == (ids.shape[1], REGISTERS, patches), calls
    return enc, dec, dropped


def labels(steps: int, first: tuple[str, int], second: tuple[str, int]) -> list[str]:
    return [f"{s + 1}:{name}{i}" for s in range(steps) for name, n in (first, second) for i in range(n)]


def draw_sequence(ax, y, steps, parts, title, dropped=None, label_below=False):
    """One row of boxes: ``steps`` blocks of ``parts`` [(letter, count, colour)]; returns the box centres."""
    x, centres = 0.0, []
    for s in range(steps):
        width = sum(n for _, n, _ in parts)
        ax.add_patch(Rectangle((x - 0.15, y - 0.55), width + 0.2, 1.1, color=STEP_COLOURS[s % 3], zorder=0))
        ax.text(x + width / 2 - 0.05, y - 0.6 if label_below else y + 0.6, f"latent step {s + 1}", ha="center",
                va="top" if label_below else "bottom", fontsize=8)
        for letter, n, colour in parts:
            for i in range(n):
                off = letter == "R" and dropped is not None and dropped[i]
                ax.add_patch(Rectangle((x, y - 0.4), 0.9, 0.8, facecolor=DROPPED if off else colour,
                                       edgecolor="black", lw=0.6, hatch="//" if off else None))
                ax.text(x + 0.45, y, "m" if off else f"{letter}{i}", ha="center", va="center", fontsize=7,
                        color="black" if off else "white")
                centres.append((s, letter, i, x + 0.45))
                x += 1
        x += 0.6
    ax.text(-0.6, y, title, ha="right", va="center", fontsize=8.5)
    return centres


def draw_layout(ax, enc, dec, dropped):
    steps, n_patch, n_reg = enc[1], enc[2], enc[3]
    top = draw_sequence(ax, 3.2, steps, [("P", n_patch, PATCH), ("R", n_reg, REGISTER)],
                        "encoder sequence\n[patches | registers]")
    bottom = draw_sequence(ax, 0.0, steps, [("R", n_reg, REGISTER), ("P", n_patch, PATCH)],
                           f"decoder sequence, k = {KEEP}\n[registers | patches]", dropped, label_below=True)
    for (s, letter, i, x) in top:
        if letter != "R":
            continue
        target = next(bx for (bs, bl, bi, bx) in bottom if (bs, bl, bi) == (s, "R", i))
        kept = not dropped[i]
        ax.add_patch(FancyArrowPatch((x, 2.75), (target, 0.45), arrowstyle="-|>", mutation_scale=7, lw=0.7,
                                     color="black" if kept else DROPPED, ls="-" if kept else ":"))
    ax.text(bottom[-1][3] + 1.2, 1.6, f"register outputs -> FSQ -> ids [t, N]\n(token i of step t; coarse to fine)\n"
            f"first k = {KEEP} ids embedded; the rest\n-> nested-dropout mask token (m)\n"
            "decoder patches: the noisy latent x_s", fontsize=7.5, va="center")
    ax.set_xlim(-7.5, bottom[-1][3] + 9)
    ax.set_ylim(-1.2, 4.6)
    ax.axis("off")
    ax.set_title(f"Token layout per latent step ({n_patch} patches P, {n_reg} registers R = tokens a step)",
                 fontsize=10)


def draw_mask(ax, call, names, title, note):
    kind, steps, n_first, n_second, mask = call
    ax.imshow(mask.int().numpy(), cmap=ListedColormap(["white", "#2B5D8C"]), vmin=0, vmax=1,
              interpolation="nearest")
    size = mask.shape[0]
    ax.set_xticks(range(size), names, rotation=90, fontsize=6)
    ax.set_yticks(range(size), names, fontsize=6)
    ax.set_xticks([x - 0.5 for x in range(size + 1)], minor=True)
    ax.set_yticks([y - 0.5 for y in range(size + 1)], minor=True)
    ax.grid(which="minor", color="#DDDDDD", lw=0.4)
    ax.tick_params(which="minor", length=0)
    per_step = n_first + n_second
    for s in range(1, steps):
        ax.axhline(s * per_step - 0.5, color="black", lw=1)
        ax.axvline(s * per_step - 0.5, color="black", lw=1)
    ax.set_xlabel("key (attended to)", fontsize=8)
    ax.set_ylabel("query", fontsize=8)
    ax.set_title(f"{title}: {kind}", fontsize=9.5)
    ax.text(0.5, -0.14, note, transform=ax.transAxes, ha="center", va="top", fontsize=7.5, wrap=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-o", "--output", type=Path, default=ROOT / "docs" / "token_layout.png")
    args = parser.parse_args()
    enc, dec, dropped = record()
    steps, n_patch, n_reg = enc[1], enc[2], enc[3]
    fig = plt.figure(figsize=(11, 8.7))
    grid = fig.add_gridspec(2, 2, height_ratios=[1, 2.9], hspace=0.08, wspace=0.28,
                            left=0.07, right=0.98, top=0.97, bottom=0.1)
    draw_layout(fig.add_subplot(grid[0, :]), enc, dec, dropped)
    draw_mask(fig.add_subplot(grid[1, 0]), enc, labels(steps, ("P", n_patch), ("R", n_reg)),
              "Encoder mask",
              "A token sees every token of earlier steps. In its own step, patches see the step's\n"
              "patches only; register i sees the step's patches and registers 0..i (coarse to fine).")
    draw_mask(fig.add_subplot(grid[1, 1]), dec, labels(steps, ("R", n_reg), ("P", n_patch)),
              "Decoder mask",
              "A token sees every token of its own and earlier steps. The released decoders and the\n"
              "'decoder' training stage use attention: full instead (no mask: everything sees everything).")
    fig.text(0.5, 0.005, "Drawn by scripts/draw_token_layout.py from the masks a flex-tiny tokenizer (16x16 pixels, "
             f"{n_reg} registers) passes to attention for a {FRAMES}-frame clip; dark = attends.",
             ha="center", va="bottom", fontsize=7.5, color="#444444")
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=80, format="png", metadata={"Software": None})
    plt.close(fig)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_bytes(buffer.getvalue())
    print(f"wrote {args.output} ({len(buffer.getvalue()) / 1000:.0f} kB): {steps} latent steps x "
          f"[{n_patch} patches | {n_reg} registers], encoder {enc[0]}, decoder {dec[0]}, k = {KEEP} "
          f"(registers {[i for i, d in enumerate(dropped) if d]} masked)")


if __name__ == "__main__":
    main()
