"""The training log: log.csv (one row of LOG_COLUMNS per logged step) and, when TensorBoard is
installed, its event files beside it. On resume the rows past the resumed step are dropped, so
log.csv of a stopped and resumed run equals that of an uninterrupted one."""
from __future__ import annotations

import csv
from pathlib import Path

LOG_COLUMNS = ("step", "lr", "loss_total", "loss_src", "loss_aux", "loss_trg", "loss_mix",
               "loss_feat", "loss_agg", "loss_fd", "loss_mic", "pseudo_weight", "seconds")


class LogWriter:
    """Appends rows of LOG_COLUMNS to log.csv; on resume, rows past the resumed step (written
    after the last checkpoint of an interrupted run) are dropped first."""

    def __init__(self, path: Path, resume_step: int) -> None:
        self.path = path
        rows: list[list[str]] = []
        if path.exists():
            with open(path, newline="") as f:
                reader = csv.reader(f)
                header = next(reader, None)
                if header == list(LOG_COLUMNS):
                    rows = [r for r in reader if r and int(r[0]) <= resume_step]
        path.parent.mkdir(parents=True, exist_ok=True)
        self.f = open(path, "w", newline="")
        self.w = csv.writer(self.f)
        self.w.writerow(LOG_COLUMNS)
        self.w.writerows(rows)
        self.f.flush()
        self.tb = None
        try:
            # TensorBoard is an optional dependency: imported here to find out whether it is there
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(path.parent / "tensorboard"))
        except Exception:  # noqa: BLE001 - tensorboard is optional
            self.tb = None

    def write(self, step: int, values: dict[str, float]) -> None:
        row = [step] + [_fmt(values.get(c)) for c in LOG_COLUMNS[1:]]
        self.w.writerow(row)
        self.f.flush()
        if self.tb is not None:
            for c in LOG_COLUMNS[1:]:
                if values.get(c) is not None:
                    self.tb.add_scalar(c, values[c], step)

    def close(self) -> None:
        self.f.close()
        if self.tb is not None:
            self.tb.close()


def _fmt(v: float | None) -> str:
    return "" if v is None else f"{v:.6g}"
