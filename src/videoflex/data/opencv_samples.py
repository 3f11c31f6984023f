"""Real videos and photographs from OpenCV's sample data, fetched once from PyPI.

The source distribution of ``opencv-python`` on PyPI carries the OpenCV source tree with its sample
data: five real videos (people crossing a campus square, a tree in the wind, a hand moving a box and a
cup, a scene of an animated film) and a few dozen photographs (a portrait, a footballer, fruit,
animals, buildings, street scenes, a painting). On a machine that reaches PyPI but nothing else this is
the largest store of real footage there is. Set-up, once (downloads the 82 MB sdist from PyPI, checks its SHA-256 and
extracts only the files listed here, about 17 MB)::

    videoflex fetch opencv-samples [-o DIR] [--sdist opencv_python-5.0.0.93.tar.gz]

Layout of ``DIR`` (default ``$VIDEOFLEX_CACHE/opencv-samples`` or ``~/.cache/videoflex/opencv-samples``)::

    DIR/videos/<name>   the files of OPENCV_VIDEOS   (a `folder` training source)
    DIR/photos/<name>   the files of OPENCV_PHOTOS   (a `stills` training source with `path`)

The files keep OpenCV's names. Nothing is downloaded at training or evaluation time.
"""

from __future__ import annotations

import shutil
import tarfile
import tempfile
from pathlib import Path

from videoflex.utils.cache import default_cache_dir
from videoflex.utils.download import check_sha256, fetch_file

SDIST_NAME = "opencv_python-5.0.0.93.tar.gz"
SDIST_URL = ("https://files.pythonhosted.org/packages/79/4c/a438d23e09ce2033c09f7b784ad2fbdb0adf529e434101ed28"
             "f142226f98/" + SDIST_NAME)
SDIST_SHA256 = "66aac3e5b5faa48d4025816592f3af19e4bfc2c68dec067bae2dbb4ca10aa9e2"

_ROOT = "opencv_python-5.0.0.93/opencv/"
OPENCV_VIDEOS: dict[str, str] = {
    "vtest.avi": "samples/data/vtest.avi",  # 768x576, 80 s: people crossing a campus square
    "tree.avi": "samples/data/tree.avi",  # 320x240, 30 s: a tree moving in the wind
    "Megamind.avi": "samples/data/Megamind.avi",  # 720x528, 11 s: a scene from an animated film
    # 640x480, 15 s: a hand moving a box over a table
    "box.mp4": "samples/cpp/tutorial_code/calib3d/real_time_pose_estimation/Data/box.mp4",
    "cup.mp4": "doc/js_tutorials/js_assets/cup.mp4",  # 640x480, 8 s: a hand tilting a black cup
}
"""File name in ``DIR/videos`` -> path in the OpenCV tree."""

OPENCV_PHOTOS: tuple[str, ...] = (
    "aero1.jpg", "aero3.jpg", "aloeL.jpg", "apple.jpg", "baboon.jpg", "basketball1.png", "board.jpg",
    "box_in_scene.png", "building.jpg", "butterfly.jpg", "castle.jpg", "chicky_512.png", "ela_original.jpg",
    "fruits.jpg", "gauge-1.jpg", "graf1.png", "home.jpg", "left.jpg", "lena.jpg", "leuvenA.jpg",
    "licenseplate_motion.jpg", "mcc_ccm_test.jpg", "messi5.jpg", "orange.jpg", "rubberwhale1.png",
    "smarties.png", "squirrel_cls.jpg", "starry_night.jpg", "stuff.jpg", "sudoku.png",
)
"""The photographs taken from ``samples/data`` into ``DIR/photos``: every natural photograph there, one
of each near-duplicate pair (stereo and flow pairs, chessboard series); drawings, logos, text scans
and synthetic test patterns are left out."""


def default_dest() -> Path:
    """``$VIDEOFLEX_CACHE/opencv-samples`` (or ``~/.cache/videoflex/opencv-samples``)."""
    return default_cache_dir() / "opencv-samples"


def _members() -> dict[str, Path]:
    """Member name in the sdist -> path relative to the destination folder."""
    members = {_ROOT + inside: Path("videos") / name for name, inside in OPENCV_VIDEOS.items()}
    members.update({_ROOT + "samples/data/" + name: Path("photos") / name for name in OPENCV_PHOTOS})
    return members


def is_complete(dest: Path) -> bool:
    """Whether every listed file is in ``dest``."""
    return all((dest / relative).is_file() for relative in _members().values())


def extract_samples(sdist: Path, dest: Path) -> Path:
    """Copy the listed videos and photographs out of an ``opencv-python`` sdist into ``dest``.

    Files are written under a temporary name and renamed; a member missing from the archive is an error
    naming it (no file is left half-written), and so is an archive that is not a ``.tar.gz`` (``ValueError``
    both). Returns ``dest``.
    """
    wanted = _members()
    found: set[str] = set()
    try:
        with tarfile.open(sdist, "r:gz") as tar:
            for member in tar:  # one pass over the compressed stream
                if member.name not in wanted:
                    continue
                source = tar.extractfile(member)
                if source is None:
                    raise ValueError(f"{sdist}: {member.name} is not a regular file")
                target = dest / wanted[member.name]
                target.parent.mkdir(parents=True, exist_ok=True)
                part = target.with_name(target.name + ".part")
                with source, part.open("wb") as out:
                    shutil.copyfileobj(source, out)
                part.replace(target)
                found.add(member.name)
    except (tarfile.TarError, EOFError) as err:
        raise ValueError(f"{sdist}: not a readable .tar.gz archive ({err})") from None
    missing = sorted(set(wanted) - found)
    if missing:
        raise ValueError(f"{sdist} lacks {len(missing)} of the sample files ({', '.join(missing[:3])}, ...); "
                         f"is it {SDIST_NAME}?")
    return dest


def fetch_samples(dest: Path | None = None, sdist: Path | None = None, progress: bool = True) -> Path:
    """Put the sample videos and photographs into ``dest`` (default :func:`default_dest`) and return it.

    Does nothing when they are all there. Otherwise downloads the pinned sdist from the package index
    into a temporary folder (SHA-256 checked, see :func:`videoflex.utils.download.fetch_file`) and
    extracts the listed files. ``sdist``: a local copy of the archive (its SHA-256 is checked) instead of
    the download. Raises ``ValueError`` (wrong archive), ``DownloadError``, ``FileNotFoundError``.
    """
    dest = dest if dest is not None else default_dest()
    if is_complete(dest):
        return dest
    if sdist is not None:
        check_sha256(sdist, SDIST_SHA256, f"{sdist} ({SDIST_NAME}?)")
        return extract_samples(sdist, dest)
    with tempfile.TemporaryDirectory() as tmp:
        return extract_samples(fetch_file(SDIST_URL, SDIST_SHA256, Path(tmp), progress=progress), dest)
