"""Where a training run's records go: ``OUT/log.jsonl`` always, and TensorBoard event files under
``OUT/tensorboard`` when the ``tensorboard`` package is installed (``tensorboard --logdir OUT``)."""

from __future__ import annotations

import json
from pathlib import Path


class RunLog:
    """Appends records ``{"step": int, name: float, ...}``; one scalar series per name in TensorBoard."""

    def __init__(self, out: Path) -> None:
        self.file = open(out / "log.jsonl", "a")  # noqa: SIM115 (closed by close())
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # torch's writer needs the tensorboard package
            self.board = None
        else:
            self.board = SummaryWriter(log_dir=str(out / "tensorboard"))

    def write(self, record: dict[str, float | int]) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.board is not None:
            for name, value in record.items():
                if name != "step":
                    self.board.add_scalar(name, value, record["step"])
            self.board.flush()

    def close(self) -> None:
        self.file.close()
        if self.board is not None:
            self.board.close()
