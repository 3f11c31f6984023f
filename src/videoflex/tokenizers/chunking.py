"""How a video of any length is cut into overlapping chunks and how their tokens are stitched.

Chunk k covers frames ``[k * stride, k * stride + chunk_frames)`` of the padded video, with
``stride = chunk_frames - overlap``; the last chunk may be shorter. The padded video has
``1 + tf * (t - 1)`` frames for ``t`` token steps: the first chunk keeps all its steps, every later chunk
drops its first ``overlap_steps`` (they encode the frames it shares with the previous chunk).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Chunk:
    start: int  # first frame in the padded video
    frames: int  # frames in this chunk (1 + tf * m)
    steps: int  # latent steps of this chunk
    kept_steps: int  # token steps this chunk contributes (steps minus the shared ones)

    @property
    def shared_steps(self) -> int:
        """Latent steps at the start of this chunk shared with the chunk before (their ids are dropped)."""
        return self.steps - self.kept_steps


@dataclass(frozen=True)
class ChunkPlan:
    num_frames: int  # frames asked for
    padded_frames: int  # 1 + tf * (token_steps - 1) >= num_frames
    chunks: tuple[Chunk, ...]

    @property
    def token_steps(self) -> int:
        return sum(c.kept_steps for c in self.chunks)


def plan_chunks(num_frames: int, chunk_frames: int, overlap: int, temporal_factor: int) -> ChunkPlan:
    """Chunks for a video of ``num_frames >= 1`` frames (padded to ``1 + tf * m`` at the end)."""
    if num_frames < 1:
        raise ValueError(f"a video needs at least 1 frame, got {num_frames}")
    tf = temporal_factor
    padded = 1 + tf * -(-(num_frames - 1) // tf)
    stride = chunk_frames - overlap
    overlap_steps = 1 + (overlap - 1) // tf
    chunks, start = [], 0
    while True:
        frames = min(chunk_frames, padded - start)
        steps = 1 + (frames - 1) // tf
        chunks.append(Chunk(start, frames, steps, steps if start == 0 else steps - overlap_steps))
        if start + frames >= padded:
            break
        start += stride
    return ChunkPlan(num_frames, padded, tuple(chunks))


def plan_from_steps(token_steps: int, chunk_frames: int, overlap: int, temporal_factor: int,
                    num_frames: int | None = None) -> ChunkPlan:
    """The plan that produced ``token_steps`` token steps; ``num_frames`` (default: all) trims the end."""
    padded = 1 + temporal_factor * (token_steps - 1)
    if num_frames is None:
        num_frames = padded
    if not padded - temporal_factor < num_frames <= padded:
        raise ValueError(
            f"{token_steps} token steps decode to {padded} frames; num_frames must lie in "
            f"({padded - temporal_factor}, {padded}], got {num_frames}"
        )
    return plan_chunks(num_frames, chunk_frames, overlap, temporal_factor)
