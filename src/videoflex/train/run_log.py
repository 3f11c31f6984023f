"""Where a training run's records go: ``OUT/log.jsonl`` always, and TensorBoard event files under
``OUT/tensorboard`` when the ``tensorboard`` package is installed (``tensorboard --logdir OUT``)."""

from __future__ import annotations

import json
from pathlib import Path


def cut_log(path: Path, last_step: int) -> None:
    """Keep only the records of ``path`` up to ``last_step`` (rewritten atomically): a run resumed from the
    checkpoint of ``last_step`` logs the later steps again, so their records from before the interruption go.
    A line that is not a JSON record (a write cut short by a kill) goes too."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int) and record["step"] <= last_step:
            kept.append(line + "\n")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(kept))
    tmp.replace(path)


class RunLog:
    """Appends records ``{"step": int, name: float, ...}``; one scalar series per name in TensorBoard.

    start: the step the run starts from; records of later steps left by an interrupted run are removed
    from ``log.jsonl`` first (:func:`cut_log`; TensorBoard keeps both and shows the newest).
    """

    def __init__(self, out: Path, start: int = 0) -> None:
        cut_log(out / "log.jsonl", start)
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
