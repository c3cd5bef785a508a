"""Run logging: metrics.jsonl, TensorBoard event files (tensorboardX, no TensorFlow), a PNG of the curves."""

from __future__ import annotations

import json
import math
import pathlib
from typing import Any, Mapping

import numpy as np


def _scalar(v: Any) -> float | int | str:
    v = np.asarray(v)
    return v.item() if v.size == 1 else str(v.tolist())


def read_metrics(workdir: str | pathlib.Path) -> list[dict]:
    """The rows of ``workdir/metrics.jsonl`` (none when the run logged nothing)."""
    path = pathlib.Path(workdir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class MetricWriter:
    """Appends ``{"step": s, "split": ..., **scalars}`` lines to ``workdir/metrics.jsonl`` and TensorBoard; with
    ``enabled=False`` (every process but the first of a multi-process run) it writes nothing."""

    def __init__(self, workdir: str | pathlib.Path, *, tensorboard: bool = True, enabled: bool = True):
        self.workdir = pathlib.Path(workdir)
        self.path = self.workdir / "metrics.jsonl"
        self.enabled = enabled
        self._tb = None
        if enabled:
            self.workdir.mkdir(parents=True, exist_ok=True)
        if tensorboard and enabled:
            from tensorboardX import SummaryWriter
            self._tb = SummaryWriter(str(self.workdir / "tensorboard"))

    def write(self, step: int, scalars: Mapping[str, Any], *, split: str = "train") -> None:
        if not self.enabled:
            return
        row = {"step": int(step), "split": split, **{k: _scalar(v) for k, v in scalars.items()}}
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        if self._tb is not None:
            for k, v in row.items():
                if k not in ("step", "split") and isinstance(v, (int, float)) and math.isfinite(v):
                    self._tb.add_scalar(f"{split}/{k}".replace("@", "_at_"), v, int(step))

    def rows(self) -> list[dict]:
        return read_metrics(self.workdir)

    def truncate_after(self, step: int) -> None:
        """Drops rows logged after ``step`` (a resumed run replays them)."""
        if not self.enabled:
            return
        kept = [r for r in self.rows() if r["step"] <= step]
        self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def plot_curves(rows: list[dict], path: str | pathlib.Path) -> pathlib.Path:
    """One panel per logged quantity (train and eval), steps on the x axis."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, tuple[list, list]] = {}
    for r in rows:
        for k, v in r.items():
            if k in ("step", "split") or not isinstance(v, (int, float)):
                continue
            xs, ys = series.setdefault(f"{r['split']}/{k}", ([], []))
            xs.append(r["step"])
            ys.append(v)
    n = max(len(series), 1)
    cols = min(3, n)
    fig, axes = plt.subplots((n + cols - 1) // cols, cols, figsize=(4.5 * cols, 3 * ((n + cols - 1) // cols)),
                             squeeze=False)
    for ax, (name, (xs, ys)) in zip(axes.flat, sorted(series.items())):
        ax.plot(xs, ys, marker="." if len(xs) < 30 else None)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(series):]:
        ax.axis("off")
    fig.tight_layout()
    path = pathlib.Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
