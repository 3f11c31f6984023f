"""Where a training run's records go: ``OUT/log.jsonl`` always, ``OUT/curves.png`` (every numeric field over
steps, :mod:`videoflex.train.curves`) when matplotlib is installed, and TensorBoard event files under
``OUT/tensorboard`` when the ``tensorboard`` package is installed (``tensorboard --logdir OUT``)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from videoflex.train.curves import CURVES_NAME, curves_available, plot_curves, read_log


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
    curves: redraw ``OUT/curves.png`` from the whole ``log.jsonl`` when :meth:`write` is asked to (the loop
    asks at every evaluation) and at :meth:`close`; without matplotlib, a warning and no plot.
    """

    def __init__(self, out: Path, start: int = 0, curves: bool = True) -> None:
        cut_log(out / "log.jsonl", start)
        self.path = out / "log.jsonl"
        self.curves = out / CURVES_NAME if curves and curves_available() else None
        if curves and self.curves is None:
            warnings.warn(f"matplotlib is not installed: no {out / CURVES_NAME} "
                          "(pip install 'videoflex[eval]')", stacklevel=2)
        self._unplotted = False
        self.file = open(self.path, "a")  # noqa: SIM115 (closed by close())
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # torch's writer needs the tensorboard package
            self.board = None
        else:
            self.board = SummaryWriter(log_dir=str(out / "tensorboard"))

    def write(self, record: dict[str, float | int], plot: bool = False) -> None:
        """Append ``record``; with ``plot``, redraw ``curves.png`` (see the class docstring)."""
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        self._unplotted = True
        if plot:
            self.plot()
        if self.board is not None:
            for name, value in record.items():
                if name != "step":
                    self.board.add_scalar(name, value, record["step"])
            self.board.flush()

    def plot(self) -> Path | None:
        """Redraw ``curves.png`` from ``log.jsonl`` (atomically); returns its path, or ``None`` when curves are
        off or there is nothing to draw. A failure to draw is a warning: it never stops a run."""
        if self.curves is None:
            return None
        self._unplotted = False
        try:
            return plot_curves(read_log(self.path), self.curves, title=str(self.path.parent.name))
        except (OSError, ValueError, RuntimeError) as err:
            warnings.warn(f"{self.curves}: not drawn ({err})", stacklevel=2)
            return None

    def close(self) -> None:
        """Close the log; redraw the curves if records came since the last drawing."""
        if self._unplotted:
            self.plot()
        self.file.close()
        if self.board is not None:
            self.board.close()
