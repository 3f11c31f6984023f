"""Synthetic clips: one coloured shape moving in a named direction over a plain background.

Every factor is known exactly, so class- and text-conditioning can be checked. Item ``i`` draws its
shape, colour, motion, scale and start position from a generator seeded by ``(seed, i)``: the same
clip for the same index on every run and worker. The shape moves in a straight line at constant
speed and crosses ``travel`` of the free space along each moving axis over the clip, whatever its
length, always staying inside the frame. Edges are antialiased (drawn at 4x and downsampled).

Class ids (``label_by``):

- ``"all"``: ``(shape_index * len(colours) + colour_index) * len(motions) + motion_index``
- ``"shape"`` / ``"colour"`` / ``"motion"``: the index of that factor alone,

where indices are positions in the config's ``shapes``, ``colours`` and ``motions``. Captions read
``"a red circle moving up and to the left"`` (``"an orange ..."``).

Held-out combinations (``combinations``): the combination ``(s, k, m)`` with index
``c = (s * len(colours) + k) * len(motions) + m`` is *held out* when ``c % heldout_every == heldout_every - 1``
(every 7th by default: 54 of the 384 combinations, among which every shape, colour and motion occurs).
``"seen"`` never draws a held-out combination, ``"heldout"`` draws only them, so a text-conditional model
trained on ``"seen"`` clips can be asked for attribute combinations it never saw.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw
from torch.utils.data import Dataset

from videoflex.data.sample import VideoSample
from videoflex.io.video import Size, uint8_to_video

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "star", "hexagon")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (230, 40, 40),
    "green": (40, 200, 60),
    "blue": (50, 90, 240),
    "yellow": (240, 220, 40),
    "magenta": (220, 50, 220),
    "cyan": (40, 220, 230),
    "white": (245, 245, 245),
    "orange": (250, 140, 20),
}
MOTIONS: dict[str, tuple[int, int]] = {  # (dx, dy) in image coordinates (y down)
    "left": (-1, 0),
    "right": (1, 0),
    "up": (0, -1),
    "down": (0, 1),
    "up-left": (-1, -1),
    "up-right": (1, -1),
    "down-left": (-1, 1),
    "down-right": (1, 1),
}
MOTION_PHRASES = {
    "left": "left",
    "right": "right",
    "up": "up",
    "down": "down",
    "up-left": "up and to the left",
    "up-right": "up and to the right",
    "down-left": "down and to the left",
    "down-right": "down and to the right",
}
SUPERSAMPLE = 4


@dataclass(frozen=True)
class ShapesConfig:
    """Synthetic moving shapes.

    Attributes:
        num_samples: dataset length.
        num_frames: frames per clip (any length >= 1).
        size: ``S`` or ``(H, W)``.
        fps: the frame rate the clips claim (the motion is defined per clip, not per second).
        shapes, colours, motions: the factor values used (subsets of ``SHAPES``, ``COLOURS``, ``MOTIONS``).
        label_by: what the class id encodes, see the module docstring.
        combinations: ``"all"``, ``"seen"`` (no held-out combination) or ``"heldout"`` (only those); see the
            module docstring.
        heldout_every: one combination in this many is held out (>= 2).
        scale: range of the shape's diameter as a fraction of the short side.
        travel: fraction of the free space crossed along each moving axis over the clip, in (0, 1].
        background: RGB of the background.
        seed: base seed.
    """

    num_samples: int = 10_000
    num_frames: int = 17
    size: Size = 64
    fps: float = 8.0
    shapes: tuple[str, ...] = SHAPES
    colours: tuple[str, ...] = tuple(COLOURS)
    motions: tuple[str, ...] = tuple(MOTIONS)
    label_by: Literal["all", "shape", "colour", "motion"] = "all"
    combinations: Literal["all", "seen", "heldout"] = "all"
    heldout_every: int = 7
    scale: tuple[float, float] = (0.25, 0.4)
    travel: float = 0.6
    background: tuple[int, int, int] = (24, 24, 28)
    seed: int = 0

    def __post_init__(self) -> None:
        for field, values, known in (
            ("shapes", self.shapes, SHAPES),
            ("colours", self.colours, COLOURS),
            ("motions", self.motions, MOTIONS),
        ):
            if not values:
                raise ValueError(f"{field} must not be empty")
            unknown = [v for v in values if v not in known]
            if unknown or len(set(values)) != len(values):
                raise ValueError(f"{field} must be distinct values from {list(known)}, got {list(values)}")
        if self.num_samples < 1 or self.num_frames < 1 or not self.fps > 0:
            raise ValueError("num_samples and num_frames must be >= 1 and fps positive")
        h, w = (self.size, self.size) if isinstance(self.size, int) else self.size
        if h < 8 or w < 8:
            raise ValueError(f"size must be at least 8x8, got {self.size}")
        if self.label_by not in ("all", "shape", "colour", "motion"):
            raise ValueError(f"label_by must be all, shape, colour or motion, got {self.label_by!r}")
        if self.combinations not in ("all", "seen", "heldout"):
            raise ValueError(f"combinations must be all, seen or heldout, got {self.combinations!r}")
        if self.heldout_every < 2:
            raise ValueError(f"heldout_every must be >= 2, got {self.heldout_every}")
        if self.combinations != "all" and not self.allowed():
            raise ValueError(f"no {self.combinations} combination of these shapes, colours and motions "
                             f"(heldout_every={self.heldout_every})")
        if not 0 < self.scale[0] <= self.scale[1] < 1:
            raise ValueError(f"scale must be a range inside (0, 1), got {self.scale}")
        if not 0 < self.travel <= 1:
            raise ValueError(f"travel must be in (0, 1], got {self.travel}")


    def heldout(self, shape: str, colour: str, motion: str) -> bool:
        """Whether the combination is held out (see the module docstring); ``ValueError`` for unknown values."""
        c = (self.shapes.index(shape) * len(self.colours) + self.colours.index(colour)) * len(self.motions) \
            + self.motions.index(motion)
        return c % self.heldout_every == self.heldout_every - 1

    def allowed(self) -> tuple[tuple[str, str, str], ...]:
        """The (shape, colour, motion) combinations this config draws, in index order."""
        keep = {"all": lambda h: True, "seen": lambda h: not h, "heldout": lambda h: h}[self.combinations]
        return tuple((s, k, m) for s in self.shapes for k in self.colours for m in self.motions
                     if keep(self.heldout(s, k, m)))


@dataclass(frozen=True)
class ShapeFactors:
    """The ground truth of one clip."""

    shape: str
    colour: str
    motion: str

    @property
    def caption(self) -> str:
        article = "an" if self.colour[0] in "aeiou" else "a"
        return f"{article} {self.colour} {self.shape} moving {MOTION_PHRASES[self.motion]}"


class ShapesDataset(Dataset[VideoSample]):
    """Moving coloured shapes with exact class ids and captions (see the module docstring)."""

    def __init__(self, config: ShapesConfig = ShapesConfig()) -> None:
        self.config = config
        self._allowed = config.allowed()

    def __len__(self) -> int:
        return self.config.num_samples

    @property
    def num_classes(self) -> int:
        c = self.config
        sizes = {"shape": len(c.shapes), "colour": len(c.colours), "motion": len(c.motions)}
        return math.prod(sizes.values()) if c.label_by == "all" else sizes[c.label_by]

    def label(self, factors: ShapeFactors) -> int:
        """The class id of ``factors`` under ``config.label_by``."""
        c = self.config
        s, k, m = (
            c.shapes.index(factors.shape),
            c.colours.index(factors.colour),
            c.motions.index(factors.motion),
        )
        return {"all": (s * len(c.colours) + k) * len(c.motions) + m, "shape": s, "colour": k, "motion": m}[
            c.label_by
        ]

    def factors(self, index: int) -> ShapeFactors:
        """Shape, colour and motion of item ``index``."""
        return self._draw(index)[0]

    def _draw(self, index: int) -> tuple[ShapeFactors, np.random.Generator]:
        c = self.config
        rng = np.random.default_rng([c.seed, index])
        if c.combinations == "all":  # three draws, as before the held-out split (the same clips)
            factors = ShapeFactors(
                shape=c.shapes[int(rng.integers(len(c.shapes)))],
                colour=c.colours[int(rng.integers(len(c.colours)))],
                motion=c.motions[int(rng.integers(len(c.motions)))],
            )
        else:
            factors = ShapeFactors(*self._allowed[int(rng.integers(len(self._allowed)))])
        return factors, rng

    def __getitem__(self, index: int) -> VideoSample:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} clips")
        index %= len(self)
        c = self.config
        factors, rng = self._draw(index)
        h, w = (c.size, c.size) if isinstance(c.size, int) else c.size
        diameter = float(rng.uniform(*c.scale)) * min(h, w)
        rotation = float(rng.uniform(0, 360)) if factors.shape in ("star", "hexagon", "triangle") else 0.0
        centres = _trajectory(MOTIONS[factors.motion], (h, w), diameter, c.num_frames, c.travel, rng)
        frames = np.stack(
            [
                _render(
                    factors.shape, COLOURS[factors.colour], c.background, (h, w), (y, x), diameter, rotation
                )
                for y, x in centres
            ]
        )
        return VideoSample(
            video=uint8_to_video(frames),
            label=self.label(factors),
            caption=factors.caption,
            source=f"shapes/{c.seed}/{index}",
            fps=c.fps,
        )


def _trajectory(direction, hw, diameter, num_frames, travel, rng) -> list[tuple[float, float]]:
    """Centres ``(y, x)`` per frame: a straight line inside ``[r, side - r]`` on both axes."""
    centre = []
    for axis, (side, step) in enumerate(zip(hw, direction[::-1])):  # axis 0: y (dy), axis 1: x (dx)
        lo, hi = diameter / 2, side - diameter / 2
        span = travel * (hi - lo) * step
        first = rng.uniform(lo, hi) if step == 0 else rng.uniform(lo + max(0, -span), hi - max(0, span))
        centre.append((first, span))
    steps = max(1, num_frames - 1)
    return [
        (centre[0][0] + centre[0][1] * i / steps, centre[1][0] + centre[1][1] * i / steps)
        for i in range(num_frames)
    ]


def _render(shape, colour, background, hw, centre, diameter, rotation) -> np.ndarray:
    """One uint8 ``[H, W, 3]`` frame, drawn at ``SUPERSAMPLE`` x and box-downsampled."""
    h, w = hw
    s = SUPERSAMPLE
    image = Image.new("RGB", (w * s, h * s), tuple(background))
    draw = ImageDraw.Draw(image)
    cy, cx, r = centre[0] * s, centre[1] * s, diameter * s / 2
    if shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
    elif shape == "square":
        a = r / math.sqrt(2) * 1.25  # a square of similar area to the circle
        draw.rectangle((cx - a, cy - a, cx + a, cy + a), fill=colour)
    else:
        draw.polygon(_polygon(shape, cx, cy, r, rotation), fill=colour)
    return np.asarray(image.resize((w, h), Image.Resampling.BOX))


def _polygon(shape, cx, cy, r, rotation) -> list[tuple[float, float]]:
    if shape == "triangle":
        radii, n, phase = [r], 3, -90.0
    elif shape == "diamond":
        radii, n, phase = [r], 4, -90.0
    elif shape == "hexagon":
        radii, n, phase = [r], 6, 0.0
    elif shape == "star":
        radii, n, phase = [r, r * 0.45], 10, -90.0
    else:
        raise ValueError(f"unknown shape {shape!r}")
    phase += rotation if shape != "diamond" else 0.0
    points = []
    for i in range(n):
        angle = math.radians(phase + 360.0 * i / n)
        radius = radii[i % len(radii)]
        points.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
    return points
