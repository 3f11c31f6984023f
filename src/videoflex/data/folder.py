"""Datasets of video files: a list of files, or a folder tree with class sub-folders and captions.

Layout of a folder dataset (``root`` walked recursively; hidden files and folders skipped)::

    root/<class name>/.../<clip>.mp4     class = the first sub-folder under root
    root/<class name>/.../<clip>.txt     optional caption (sidecar file, same stem)

Class ids are the sorted class names numbered from 0 (or the order of ``class_names`` when given),
so the map is stable across machines. A CSV or JSONL manifest may list the clips instead: columns
(keys) ``path`` (relative to root, or absolute), optional ``caption``, optional ``label`` (an int
id, or a class name; names are numbered in sorted order). With a manifest the dataset is exactly
its rows; a manifest caption wins over a sidecar file.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from videoflex.data.sample import VideoSample
from videoflex.data.transforms import ClipSpec, clip_start, cut_clip
from videoflex.io.video import VideoInfo, probe_video

VIDEO_EXTENSIONS = (
    ".mp4",
    ".m4v",
    ".mov",
    ".mkv",
    ".webm",
    ".avi",
    ".gif",
    ".mpg",
    ".mpeg",
    ".ts",
    ".flv",
    ".wmv",
    ".ogv",
    ".3gp",
)


@dataclass(frozen=True)
class VideoEntry:
    """One video file with its optional class id and caption."""

    path: Path
    label: int | None = None
    caption: str | None = None


class VideoFileDataset(Dataset[VideoSample]):
    """Clips cut from a list of video files; ``clips_per_video`` clips per file.

    Item ``i`` is clip ``i % clips_per_video`` of file ``i // clips_per_video``. Random windows are
    drawn from a generator seeded by ``(seed, epoch, i)``: the same in every worker and run; call
    :meth:`set_epoch` to draw new ones. A video shorter than the clip is padded by repeating its last
    frame. Unreadable files raise :class:`~videoflex.io.errors.VideoReadError` naming the file.
    """

    def __init__(
        self,
        entries: Sequence[VideoEntry],
        clip: ClipSpec | None = None,
        *,
        clips_per_video: int = 1,
        seed: int = 0,
        classes: Sequence[str] | None = None,
    ) -> None:
        if not entries:
            raise ValueError("no video files given")
        if clips_per_video < 1:
            raise ValueError(f"clips_per_video must be >= 1, got {clips_per_video}")
        self.entries = list(entries)
        self.clip = clip if clip is not None else ClipSpec()
        self.clips_per_video = clips_per_video
        self.seed = seed
        self.epoch = 0
        self.classes: list[str] | None = list(classes) if classes is not None else None
        self._info: dict[Path, VideoInfo] = {}

    def __len__(self) -> int:
        return len(self.entries) * self.clips_per_video

    def set_epoch(self, epoch: int) -> None:
        """Draw different random windows from now on (call once per epoch, before iterating).

        DataLoader workers copy the dataset when they start, so with ``persistent_workers=True`` they
        keep the epoch they started with.
        """
        self.epoch = epoch

    def info(self, index: int) -> VideoInfo:
        """Container facts of the file behind item ``index`` (cached)."""
        path = self.entries[index // self.clips_per_video].path
        if path not in self._info:
            self._info[path] = probe_video(path)
        return self._info[path]

    def __getitem__(self, index: int) -> VideoSample:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} clips")
        index %= len(self)
        entry = self.entries[index // self.clips_per_video]
        clip = self.clip
        start = 0.0
        if clip.num_frames is not None and clip.window != "start":
            info = self.info(index)
            rate = clip.fps if clip.fps is not None else info.fps
            rng = np.random.default_rng([self.seed, self.epoch, index])
            start = clip_start(
                info.duration,
                clip.num_frames / rate,
                clip.window,
                rng,
                index % self.clips_per_video,
                self.clips_per_video,
            )
        decoded = cut_clip(entry.path, clip, start, np.random.default_rng([self.seed, self.epoch, index, 1]))
        return VideoSample(
            video=decoded.video,
            label=entry.label,
            caption=entry.caption,
            source=f"{entry.path}@{decoded.start:.3f}s",
            fps=decoded.fps,
        )


class VideoFolderDataset(VideoFileDataset):
    """Every video under ``root`` (or every row of ``manifest``), see the module docstring.

    Args:
        root: the folder.
        clip: frames to cut from each file (default ``ClipSpec()``: 17 frames, 8 fps, 64x64, random window).
        manifest: optional CSV/JSONL file listing the clips (paths relative to ``root``).
        labels: take class ids from the first sub-folder (or the manifest's ``label``); ``False``
            gives unlabelled samples.
        class_names: fixes the class list and its order (e.g. to share ids between train and val).
        extensions: file suffixes counted as videos (lower case).
        clips_per_video, seed: see :class:`VideoFileDataset`.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        clip: ClipSpec | None = None,
        *,
        manifest: str | os.PathLike | None = None,
        labels: bool = True,
        class_names: Sequence[str] | None = None,
        extensions: Sequence[str] = VIDEO_EXTENSIONS,
        clips_per_video: int = 1,
        seed: int = 0,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise ValueError(f"{self.root}: not a folder")
        rows = (
            _read_manifest(Path(manifest), self.root)
            if manifest is not None
            else _walk(self.root, extensions)
        )
        if not rows:
            raise ValueError(
                f"{manifest or self.root}: no video files found (suffixes {', '.join(extensions)})"
            )
        entries, classes = _label_rows(rows, self.root, labels, class_names)
        super().__init__(entries, clip, clips_per_video=clips_per_video, seed=seed, classes=classes)
        self.class_to_id = {name: i for i, name in enumerate(classes)} if classes is not None else None


@dataclass
class _Row:
    path: Path
    caption: str | None
    label: str | None  # as written in the manifest (an int or a class name), None if absent


def _walk(root: Path, extensions: Sequence[str]) -> list[_Row]:
    suffixes = {e.lower() for e in extensions}
    rows = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if name.startswith(".") or path.suffix.lower() not in suffixes:
                continue
            rows.append(_Row(path, _sidecar_caption(path), None))
    return rows


def _sidecar_caption(path: Path) -> str | None:
    text_file = path.with_suffix(".txt")
    if text_file.is_file():
        text = text_file.read_text(encoding="utf-8").strip()
        return text or None
    return None


def _read_manifest(manifest: Path, root: Path) -> list[_Row]:
    if not manifest.is_file():
        raise ValueError(f"{manifest}: manifest file not found")
    suffix = manifest.suffix.lower()
    if suffix == ".csv":
        with manifest.open(newline="", encoding="utf-8") as f:
            records = list(csv.DictReader(f))
    elif suffix in (".jsonl", ".json"):
        records = []
        for n, line in enumerate(manifest.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise ValueError(f"{manifest}:{n}: not valid JSON ({err.msg})") from None
    else:
        raise ValueError(f"{manifest}: manifest must be .csv or .jsonl")
    rows = []
    for n, record in enumerate(records, 1):
        if not isinstance(record, dict) or not record.get("path"):
            raise ValueError(f"{manifest}: row {n} has no 'path'")
        path = Path(record["path"])
        path = path if path.is_absolute() else root / path
        if not path.is_file():
            raise ValueError(f"{manifest}: row {n}: {path} does not exist")
        caption = record.get("caption")
        caption = str(caption).strip() if caption not in (None, "") else _sidecar_caption(path)
        label = record.get("label")
        rows.append(_Row(path, caption, None if label in (None, "") else str(label)))
    return rows


def _label_rows(
    rows: list[_Row], root: Path, labels: bool, class_names: Sequence[str] | None
) -> tuple[list[VideoEntry], list[str] | None]:
    if not labels:
        return [VideoEntry(r.path, None, r.caption) for r in rows], None
    if any(r.label is not None for r in rows):  # labels from the manifest
        names = [r.label for r in rows]
        if None in names:
            missing = next(r.path for r in rows if r.label is None)
            raise ValueError(f"manifest gives labels for some rows but not for {missing}")
        if class_names is None and all(_is_int(n) for n in names):
            return [VideoEntry(r.path, int(r.label), r.caption) for r in rows], None
    else:  # labels from the first sub-folder
        names = [_class_folder(r.path, root) for r in rows]
        if all(n is None for n in names):
            return [VideoEntry(r.path, None, r.caption) for r in rows], None
        if None in names:
            loose = next(r.path for r, n in zip(rows, names) if n is None)
            raise ValueError(
                f"{loose} is not inside a class folder of {root} (pass labels=False to ignore classes)"
            )
    classes = list(class_names) if class_names is not None else sorted(set(names))
    class_to_id = {name: i for i, name in enumerate(classes)}
    unknown = sorted(set(names) - set(class_to_id))
    if unknown:
        raise ValueError(f"classes {unknown[:5]} are not in class_names")
    return [VideoEntry(r.path, class_to_id[n], r.caption) for r, n in zip(rows, names)], classes


def _class_folder(path: Path, root: Path) -> str | None:
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        return None
    return parts[0] if len(parts) > 1 else None


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True
