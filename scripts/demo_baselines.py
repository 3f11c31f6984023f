"""Reference points for the demo model's PSNR/SSIM: what a few fixed numbers per clip already give.

    python scripts/demo_baselines.py [assets/carphone.mp4]

Reads the clip as ``make demo`` does (first 17 frames at 8 fps, 64x64) and prints, per baseline, the
numbers it stores and the PSNR/SSIM of its reconstruction: the clip's mean colour, and each frame
average-pooled to an s x s thumbnail and upsampled back (bilinear). For comparison, the demo model's
32 tokens a step are 160 tokens of 16 bits (about 2,600 bits) for the 17 frames, and one token a
step (k = 1) is 80 bits.
"""

import sys

import torch.nn.functional as F

from videoflex.eval.metrics import video_metrics
from videoflex.io import read_video

if __name__ == "__main__":
    path = sys.argv[1] if len(sys.argv) > 1 else "assets/carphone.mp4"
    x = (read_video(path, fps=8.0, size=64, max_frames=17).video[None] + 1) / 2  # [1,3,T,64,64] in [0,1]
    t = x.shape[2]
    rows = [("mean colour of the clip", 3, x.mean(dim=(2, 3, 4), keepdim=True).expand_as(x))]
    for s in (2, 4, 8, 16):
        thumb = F.adaptive_avg_pool3d(x, (t, s, s))
        rows.append((f"{s}x{s} thumbnail per frame", 3 * t * s * s,
                     F.interpolate(thumb, size=x.shape[2:], mode="trilinear", align_corners=False)))
    print(f"{'baseline':28s} {'numbers':>8s} {'PSNR dB':>8s} {'SSIM':>7s}")
    for name, count, y in rows:
        m = video_metrics(y.clamp(0, 1), x)
        print(f"{name:28s} {count:8d} {float(m.psnr[0]):8.2f} {float(m.ssim[0]):7.3f}")
