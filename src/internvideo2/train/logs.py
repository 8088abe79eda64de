"""What a run writes for people to read: ``metrics.jsonl`` (one line per logging window and evaluation),
TensorBoard events and the ``loss.png`` plot. Rank 0 writes everything."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from internvideo2.utils.io import atomic_write, write_text

__all__ = ["RunLog", "plot_losses", "read_metrics"]


class RunLog:
    """JSONL and TensorBoard writers of one run (``jsonl`` / ``tensorboard``: the ``log`` config switches)."""

    def __init__(self, out_dir: Path, jsonl: bool, tensorboard: bool, enabled: bool = True):
        self.out_dir, self.jsonl, self.tensorboard, self.enabled = out_dir, jsonl, tensorboard, enabled
        self._jsonl = None
        self._tb = None

    def open(self, step: int, resumed: bool) -> None:
        """Open the writers. On a resume, ``metrics.jsonl`` keeps only the lines up to ``step`` (what the
        interrupted run wrote after its checkpoint is dropped, torn last lines included) and TensorBoard
        purges the steps after it."""
        if not self.enabled:
            return
        metrics = self.out_dir / "metrics.jsonl"
        if self.jsonl:
            keep: list[str] = []
            if metrics.is_file():
                for line in metrics.read_text().splitlines():
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError:  # a torn last line from a killed run
                        continue
                    if resumed and rec.get("step", 0) <= step:
                        keep.append(line)
            write_text(metrics, "".join(x + "\n" for x in keep))
            self._jsonl = open(metrics, "a", buffering=1)  # open for the whole run
        if self.tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # lazy: training extra

            self._tb = SummaryWriter(str(self.out_dir / "tb"), purge_step=step + 1 if resumed else None)

    def write(self, rec: dict[str, Any]) -> None:
        if self._jsonl is not None:
            self._jsonl.write(json.dumps(rec) + "\n")
        if self._tb is not None:
            for k, v in rec.items():
                if k in ("step", "epoch") or not isinstance(v, (int, float)) or isinstance(v, bool):
                    continue
                tag = k if "/" in k else f"train/{k}"
                self._tb.add_scalar(tag, v, rec["step"])

    def close(self) -> None:
        if self._jsonl is not None:
            self._jsonl.close()
        if self._tb is not None:
            self._tb.flush()
            self._tb.close()


def read_metrics(out_dir: Path) -> list[dict[str, Any]]:
    """The records of a run's ``metrics.jsonl`` in order ([] when the run wrote none)."""
    metrics = Path(out_dir) / "metrics.jsonl"
    if not metrics.is_file():
        return []
    return [json.loads(x) for x in metrics.read_text().splitlines() if x.strip()]


def plot_losses(out_dir: Path, title: str) -> Path | None:
    """``loss.png``: every ``loss*`` term and the learning rate against the step, from ``metrics.jsonl``."""
    recs = [r for r in read_metrics(out_dir) if "loss" in r]
    if not recs:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # lazy: training extra
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 6))
    FigureCanvasAgg(fig)
    ax, ax_lr = fig.add_subplot(2, 1, 1), fig.add_subplot(2, 1, 2)
    steps = [r["step"] for r in recs]
    for key in sorted({k for r in recs for k in r if k.startswith("loss")}):
        ax.plot(steps, [r.get(key, float("nan")) for r in recs], label=key)
    ax.set_ylabel("loss")
    ax.set_title(f"{title}: training losses")
    ax.legend(loc="upper right", fontsize="small")
    ax.grid(alpha=0.3)
    ax_lr.plot(steps, [r["lr"] for r in recs], color="tab:gray")
    ax_lr.set_xlabel("step")
    ax_lr.set_ylabel("lr")
    ax_lr.grid(alpha=0.3)
    fig.tight_layout()
    out = out_dir / "loss.png"
    atomic_write(out, lambda f: fig.savefig(f, format="png", dpi=100))
    return out
