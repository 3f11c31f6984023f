"""Atari game play rendered by the Arcade Learning Environment (``ale-py``, which ships the ROMs).

Item ``i`` is a clip of game ``games[i % len(games)]`` (its class id is that position), played by a
random agent from a fresh emulator seeded by ``(seed, i)``, so every item is reproducible in any
worker. The agent first plays a random number of warm-up steps (``warmup``) so clips start at
different moments. Each recorded frame is one agent step of ``frameskip`` emulator frames (60 Hz),
so the clip rate is ``60 / frameskip`` fps; with ``max_pool`` a frame is the pixel-wise maximum of
the step's last two emulator frames (removes the flicker of sprites drawn on alternate frames). The
210x160 screen is stretched (aspect not kept, nothing cropped) to ``size``. A game over during the
recording restarts the clip on a fresh episode. ``ale-py`` is in the ``data`` extra.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from torch.utils.data import Dataset

from videoflex.data.sample import VideoSample
from videoflex.data.transforms import resize_video
from videoflex.io.video import Size, uint8_to_video

ATARI_GAMES: tuple[str, ...] = (
    "pong",
    "breakout",
    "space_invaders",
    "ms_pacman",
    "seaquest",
    "enduro",
    "freeway",
    "boxing",
    "asteroids",
    "riverraid",
)
"""The default game list; a game's class id is its position in the list a dataset is built with."""

EMULATOR_HZ = 60


@dataclass(frozen=True)
class AtariConfig:
    """Atari clips.

    Attributes:
        games: ROM ids (``ale_py.roms.get_all_rom_ids()``); class id = position in this tuple.
        num_frames: frames per clip.
        size: output ``S`` or ``(H, W)``; at least 64 on each side.
        frameskip: emulator frames per recorded frame (and per agent decision).
        agent: ``"random"`` draws a uniform action every step; ``"sticky"`` repeats the previous
            action with probability ``sticky_prob``, giving longer, smoother movements.
        sticky_prob: see ``agent``.
        warmup: inclusive range of agent steps played before recording starts.
        clips_per_game: dataset length = ``len(games) * clips_per_game``.
        max_pool: max over the last two emulator frames of each step.
        seed: base seed.
    """

    games: tuple[str, ...] = ATARI_GAMES
    num_frames: int = 17
    size: Size = 64
    frameskip: int = 4
    agent: Literal["random", "sticky"] = "sticky"
    sticky_prob: float = 0.75
    warmup: tuple[int, int] = (30, 300)
    clips_per_game: int = 64
    max_pool: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.games:
            raise ValueError("games must list at least one ROM id")
        if len(set(self.games)) != len(self.games):
            raise ValueError(f"games contains duplicates: {self.games}")
        if self.num_frames < 1 or self.frameskip < 1 or self.clips_per_game < 1:
            raise ValueError("num_frames, frameskip and clips_per_game must be >= 1")
        h, w = (self.size, self.size) if isinstance(self.size, int) else self.size
        if h < 64 or w < 64:
            raise ValueError(f"size must be at least 64x64, got {self.size}")
        if self.agent not in ("random", "sticky"):
            raise ValueError(f"agent must be random or sticky, got {self.agent!r}")
        if not 0.0 <= self.sticky_prob < 1.0:
            raise ValueError(f"sticky_prob must be in [0, 1), got {self.sticky_prob}")
        if not 0 <= self.warmup[0] <= self.warmup[1]:
            raise ValueError(f"warmup must be a range (lo, hi) with 0 <= lo <= hi, got {self.warmup}")


class AtariDataset(Dataset[VideoSample]):
    """Atari game-play clips (see the module docstring); ``classes`` lists the games."""

    def __init__(self, config: AtariConfig = AtariConfig()) -> None:
        from ale_py import roms

        known = set(roms.get_all_rom_ids())
        unknown = [g for g in config.games if g not in known]
        if unknown:
            raise ValueError(f"unknown Atari games {unknown}; see ale_py.roms.get_all_rom_ids()")
        self.config = config
        self.classes = list(config.games)

    def __len__(self) -> int:
        return len(self.config.games) * self.config.clips_per_game

    @property
    def fps(self) -> float:
        return EMULATOR_HZ / self.config.frameskip

    def __getitem__(self, index: int) -> VideoSample:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} clips")
        index %= len(self)
        cfg = self.config
        label = index % len(cfg.games)
        game = cfg.games[label]
        rng = np.random.default_rng([cfg.seed, index])
        frames = _play(game, cfg, rng)  # [T, 210, 160, 3] uint8
        video = resize_video(uint8_to_video(frames), cfg.size, mode="squash").clamp(-1, 1)
        return VideoSample(
            video=video,
            label=label,
            caption=f"Atari {game.replace('_', ' ')} game play",
            source=f"atari/{game}/{index}",
            fps=self.fps,
        )


def _new_emulator(game: str, seed: int):
    from ale_py import ALEInterface, LoggerMode, roms

    ALEInterface.setLoggerMode(LoggerMode.Error)
    ale = ALEInterface()
    ale.setInt("random_seed", seed)
    ale.setFloat("repeat_action_probability", 0.0)  # stickiness is the agent's, drawn from our rng
    ale.setInt("frame_skip", 1)
    ale.loadROM(str(roms.get_rom_path(game)))
    return ale


def _play(game: str, cfg: AtariConfig, rng: np.random.Generator) -> np.ndarray:
    """Warm up, then record ``cfg.num_frames`` steps; retry on a fresh episode after a game over."""
    ale = _new_emulator(game, int(rng.integers(2**31 - 1)))
    actions = ale.getMinimalActionSet()
    action = actions[int(rng.integers(len(actions)))]

    def step() -> tuple[np.ndarray, bool]:
        nonlocal action
        if cfg.agent == "random" or rng.random() >= cfg.sticky_prob:
            action = actions[int(rng.integers(len(actions)))]
        screens = []
        for k in range(cfg.frameskip):
            ale.act(action)
            if k >= cfg.frameskip - 2:
                screens.append(ale.getScreenRGB())
        frame = np.maximum(screens[0], screens[-1]) if cfg.max_pool else screens[-1]
        return frame, ale.game_over()

    for _ in range(int(rng.integers(cfg.warmup[0], cfg.warmup[1] + 1))):
        if step()[1]:
            ale.reset_game()
    for _attempt in range(8):
        frames = []
        for _ in range(cfg.num_frames):
            frame, over = step()
            frames.append(frame)
            if over:
                break
        if len(frames) == cfg.num_frames:
            return np.stack(frames)
        ale.reset_game()
    raise RuntimeError(f"{game}: every episode ended within {cfg.num_frames} steps; use shorter clips")
