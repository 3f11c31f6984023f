"""Reference points for the demo model's PSNR/SSIM: what a few fixed numbers per clip already give.

    python scripts/demo_baselines.py [CLIP ...] [--linear-code RECIPE] [--model DIR]

Reads each clip (default: the bundled one) as ``make demo`` does (first 17 frames at 8 fps, 64x64) and
prints, per baseline, the numbers it stores and the PSNR/SSIM of its reconstruction: the clip's mean
colour, and each frame average-pooled to an s x s thumbnail and upsampled back (bilinear). For
comparison, the demo model's 32 tokens a step are 160 tokens of 16 bits (about 2,600 bits) for the 17
frames, and one token a step (k = 1) is 80 bits.

``--linear-code RECIPE`` adds a linear code with the model's budget: principal components of the
recipe's training clips (its clip cache, built first if missing), one basis for the first frame and
one for each later group of 4 frames (the model's latent steps), k tokens a step = the first 6k
coefficients, each quantised like the FSQ channel of its position (levels [8,8,8,5,5,5] in turn,
uniform over +-2.5 standard deviations of that coefficient on the training clips). It reads
``--model`` for the tokens a step, the levels and the clip shape, and fits the code once for all clips.
"""

import argparse
from typing import NamedTuple

import torch
import torch.nn.functional as F

from videoflex.eval.metrics import video_metrics
from videoflex.io import read_video

CLIPS_FOR_THE_BASIS = 4000  # training clips the principal components are computed from
RANGE = 2.5  # quantiser range, in standard deviations of each coefficient


class LinearCode:
    """Principal components of frame groups ``[n, D]`` (values in [0, 1]), quantised per coefficient."""

    def __init__(self, groups: torch.Tensor, components: int, levels: tuple[int, ...]) -> None:
        self.mean = groups.mean(0)
        centred = groups - self.mean
        with torch.random.fork_rng():  # svd_lowrank draws a random projection from the global generator
            torch.manual_seed(0)
            _, s, v = torch.svd_lowrank(centred, q=components + 16, niter=4)
        self.basis = v[:, :components]  # [D, m]
        self.std = s[:components] / (len(groups) - 1) ** 0.5
        self.levels = torch.tensor([levels[i % len(levels)] for i in range(components)], dtype=torch.float32)

    def reconstruct(self, groups: torch.Tensor, count: int) -> torch.Tensor:
        """``[n, D]`` -> ``[n, D]`` from the first ``count`` quantised coefficients."""
        z = ((groups - self.mean) @ self.basis[:, :count] / self.std[:count]).clamp(-RANGE, RANGE)
        steps = self.levels[:count] - 1
        z = torch.round((z + RANGE) / (2 * RANGE) * steps) / steps * 2 * RANGE - RANGE
        return self.mean + (z * self.std[:count]) @ self.basis[:, :count].T


def frame_groups(clips: torch.Tensor, factor: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``[B,3,1+factor*g,H,W]`` -> first frames ``[B, 3HW]`` and the later groups ``[B*g, 3*factor*HW]``."""
    b, c, t, h, w = clips.shape
    g = (t - 1) // factor
    later = clips[:, :, 1:].reshape(b, c, g, factor, h, w).transpose(1, 2).reshape(b * g, -1)
    return clips[:, :, 0].reshape(b, -1), later


class FittedCode(NamedTuple):
    """The linear code of a model's budget: one code for first frames, one for later frame groups."""

    first: LinearCode
    later: LinearCode
    tokens: int  # tokens a latent step (the model's registers)
    channels: int  # FSQ channels a token (coefficients a token)
    factor: int  # frames a latent step after the first
    frames: int  # the recipe's clip length and size, the only ones the code takes
    size: int


def fit_linear_code(recipe: str, model: str) -> FittedCode:
    """The linear code of ``model``'s budget, fitted on ``recipe``'s training clips (its clip cache)."""
    from videoflex.data.clip_cache import load_or_build_cache
    from videoflex.tokenizers.flex.model import VideoFlexTok
    from videoflex.train.tasks.tokenizer_config import load_train_config

    config = VideoFlexTok.read_config(model)
    factor, tokens, levels = config.vae.temporal_factor, config.num_registers, config.fsq.levels
    data = load_train_config(recipe).data
    if (data.frames - 1) % factor:
        raise SystemExit(f"error: {recipe} trains on {data.frames} frames; the linear code needs 1 + {factor}g")
    clips = load_or_build_cache(data, "train").clips
    pick = torch.randperm(len(clips), generator=torch.Generator().manual_seed(0))[:CLIPS_FOR_THE_BASIS]
    firsts, later = frame_groups(clips[pick].float().div_(255), factor)
    components = tokens * len(levels)
    return FittedCode(LinearCode(firsts, components, levels), LinearCode(later, components, levels), tokens,
                      len(levels), factor, data.frames, data.size)


def linear_code_rows(x: torch.Tensor, code: FittedCode) -> list[tuple[str, int, torch.Tensor]]:
    if (x.shape[2], x.shape[3]) != (code.frames, code.size):
        raise SystemExit(f"error: the recipe trains on {code.frames} frames of {code.size}px; the clip has "
                         f"{x.shape[2]} frames of {x.shape[3]}px")
    factor = code.factor
    first, groups = frame_groups(x, factor)
    steps = 1 + (x.shape[2] - 1) // factor
    rows = []
    k = 1
    while k <= code.tokens:
        count = k * code.channels
        y_first = code.first.reconstruct(first, count).reshape(x[:, :, :1].shape)
        y_later = code.later.reconstruct(groups, count).reshape(1, -1, 3, factor, *x.shape[3:])
        y = torch.cat([y_first, y_later.transpose(1, 2).reshape(x[:, :, 1:].shape)], dim=2)
        rows.append((f"linear code, k = {k}", count * steps, y))
        k *= 2
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("clips", nargs="*", default=["assets/carphone.mp4"], metavar="CLIP")
    parser.add_argument("--linear-code", metavar="RECIPE", help="add the linear code fitted on RECIPE's training clips")
    parser.add_argument("--model", default="checkpoints/demo", help="the model whose budget the linear code gets")
    args = parser.parse_args()
    code = None
    for clip in args.clips:
        x = (read_video(clip, fps=8.0, size=64, max_frames=17).video[None] + 1) / 2  # [1,3,T,64,64] in [0,1]
        t = x.shape[2]
        rows = [("mean colour of the clip", 3, x.mean(dim=(2, 3, 4), keepdim=True).expand_as(x))]
        for s in (2, 4, 8, 16):
            thumb = F.adaptive_avg_pool3d(x, (t, s, s))
            rows.append((f"{s}x{s} thumbnail per frame", 3 * t * s * s,
                         F.interpolate(thumb, size=x.shape[2:], mode="trilinear", align_corners=False)))
        if args.linear_code:
            code = code or fit_linear_code(args.linear_code, args.model)
            rows += linear_code_rows(x, code)
        if len(args.clips) > 1:
            print(clip)
        print(f"{'baseline':28s} {'numbers':>8s} {'PSNR dB':>8s} {'SSIM':>7s}")
        for name, count, y in rows:
            m = video_metrics(y.clamp(0, 1), x)
            print(f"{name:28s} {count:8d} {float(m.psnr[0]):8.4f} {float(m.ssim[0]):7.3f}")
