"""Training curves: every numeric field of a run's ``log.jsonl`` plotted over steps, by groups, as one PNG.

Groups (one panel each, in this order): every field whose name ends in ``loss`` (``loss``, ``val_loss``,
``flow_loss``, ...: one panel, log scale when all are positive and span more than a factor 10); each family of per-budget fields
``NAME_k<K>`` (``psnr_k1``, ``psnr_k16``, ...: one panel ``NAME per k``, a line per ``K`` in ascending order);
then every other field on its own (``lr``, ``clips_per_s``, ...). Fields logged only at evaluations (every
``eval_every`` steps) and short runs are drawn with markers. The model is not known here: any task's fields are plotted.

Drawn with matplotlib's Agg renderer on a ``Figure`` of its own (no pyplot state, no display needed);
matplotlib is the optional ``eval`` dependency (``pip install videoflex[eval]``): :func:`curves_available`
says whether it is installed.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from videoflex.io.video import atomic_output_path

CURVES_NAME = "curves.png"
_PER_K = re.compile(r"^(?P<name>.+)_k(?P<k>\d+)$")


@dataclass(frozen=True)
class Series:
    """One logged field: its values at the steps that logged it (same length, steps ascending)."""

    name: str
    steps: tuple[int, ...]
    values: tuple[float, ...]


@dataclass(frozen=True)
class Panel:
    """One plot: a title, a y-axis label and its series (a legend when more than one)."""

    title: str
    series: tuple[Series, ...]
    log_y: bool = False


def curves_available() -> bool:
    """Whether matplotlib (the optional ``eval`` dependency) can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def read_series(records: Iterable[Mapping[str, object]]) -> list[Series]:
    """The numeric fields of ``records`` (dicts with an int ``step``) as series, in the order they first appear;
    non-finite values, booleans and non-numbers are left out."""
    steps: dict[str, list[int]] = {}
    values: dict[str, list[float]] = {}
    for record in records:
        step = record.get("step")
        if not isinstance(step, int) or isinstance(step, bool):
            continue
        for name, value in record.items():
            if name == "step" or isinstance(value, bool) or not isinstance(value, int | float):
                continue
            if not math.isfinite(value):
                continue
            steps.setdefault(name, []).append(step)
            values.setdefault(name, []).append(float(value))
    return [Series(name, tuple(steps[name]), tuple(values[name])) for name in steps]


def group_series(series: list[Series]) -> list[Panel]:
    """Panels as the module docstring describes."""
    losses = [s for s in series if s.name.endswith("loss")]
    families: dict[str, list[tuple[int, Series]]] = {}
    others: list[Series] = []
    for s in series:
        if s.name.endswith("loss"):
            continue
        match = _PER_K.match(s.name)
        if match:
            families.setdefault(match["name"], []).append((int(match["k"]), s))
        else:
            others.append(s)
    panels = []
    if losses:
        values = [v for s in losses for v in s.values]
        spread = min(values) > 0 and max(values) > 10 * min(values)
        panels.append(Panel("loss", tuple(losses), log_y=spread))
    for name, members in families.items():
        ordered = tuple(Series(f"k={k}", s.steps, s.values) for k, s in sorted(members, key=lambda m: m[0]))
        panels.append(Panel(f"{name} per k", ordered))
    panels.extend(Panel(s.name, (s,)) for s in others)
    return panels


def read_log(path: str | os.PathLike) -> list[dict]:
    """The JSON records of a ``log.jsonl`` (lines that are not a JSON object are skipped: a cut write)."""
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def plot_curves(records: Iterable[Mapping[str, object]], path: str | os.PathLike, *, title: str = "") -> Path | None:
    """Draw the panels of ``records`` into the PNG ``path`` (written under a temporary name and renamed
    when complete; the folder must exist). Returns ``path``, or ``None`` (nothing written) when there is no
    numeric field to draw.

    Raises:
        ImportError: matplotlib is not installed (see :func:`curves_available`).
        FileNotFoundError: the folder of ``path`` is missing.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    panels = group_series(read_series(records))
    if not panels:
        return None
    columns = min(3, len(panels))
    rows = math.ceil(len(panels) / columns)
    figure = Figure(figsize=(4.2 * columns, 3.0 * rows), dpi=100, layout="constrained")
    if title:
        figure.suptitle(title)
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for ax, panel in zip(axes, panels, strict=False):
        for s in panel.series:
            sparse = len(s.steps) <= 30
            ax.plot(s.steps, s.values, marker="o" if sparse else None, markersize=3, linewidth=1.2, label=s.name)
        if panel.log_y:
            ax.set_yscale("log")
        ax.set_title(panel.title, fontsize=10)
        ax.set_xlabel("step", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        if len(panel.series) > 1:
            ax.legend(fontsize=7)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    path = Path(path)
    with atomic_output_path(path) as tmp:
        figure.savefig(tmp, format="png", metadata={"Software": None})
    return path
