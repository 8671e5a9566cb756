"""The study's table helpers, shared by the report and the plots: model labels and their order,
the best cell per task and model, relative change, the trivial-predictor baselines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

import pandas as pd

from walt.sizes import WALT_SIZES
from walt_probe.errors import ResultFileError

# Sizes in plots and tables: walt/sizes.py's table order (ascending parameter count).
SIZE_ORDER = list(WALT_SIZES)
VARIANT_LABEL = {"image": "I-WALT", "video": "V-WALT"}


def model_label(variant, size, backbone=None, family="walt") -> str:
    """'V-WALT small', 'I-WALT 284m', or the backbone's own name for non-WALT backbones."""
    if family == "walt" and variant in VARIANT_LABEL:
        return VARIANT_LABEL[variant] + (f" {size}" if size else "")
    return str(backbone or "unknown")


def model_sort_key(model: str):
    parts = str(model).split(" ")
    size = parts[1] if len(parts) > 1 else ""
    return (SIZE_ORDER.index(size) if size in SIZE_ORDER else len(SIZE_ORDER), size, parts[0])


def best_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Per (task, model): the best (block, t) cell in the metric's direction.

    Repeats of a cell (readout seeds, `Run.seed`) are averaged first, so a lucky seed does not
    pick the cell: the returned row is the cell's first trial with `value` set to the mean.
    """
    ok = df[(df.status == "ok") & df.value.notna()]
    out = []
    for (_, _), g in ok.groupby(["task", "model"], sort=False):
        hib = bool(g.higher_is_better.iloc[0])
        cells = g.assign(_b=g.block.astype(object), _t=g.t.astype(object)).groupby(
            ["_b", "_t"], sort=False, dropna=False)
        means = cells.value.mean()
        cell = means.idxmax() if hib else means.idxmin()
        row = g.loc[cells.groups[cell][0]].copy()
        row["value"] = float(means[cell])
        out.append(row)
    return pd.DataFrame(out, columns=df.columns)


def relative_change(value: float, baseline: float, higher_is_better: bool) -> float:
    """(value - baseline) / |baseline| in percent, sign flipped for lower-is-better metrics."""
    if baseline == 0 or pd.isna(baseline) or pd.isna(value):
        return float("nan")
    rel = (value - baseline) / abs(baseline) * 100.0
    return rel if higher_is_better else -rel


BASELINE_KEYS = ("task", "metric", "higher_is_better", "value", "predictor")


class BaselineFileError(ResultFileError):
    """A file in the --baselines folder is not a `walt-probe baseline` result."""


def load_baselines(folder: str | Path) -> dict[str, dict]:
    """{task name: record} from the <task>.json files `walt-probe baseline` wrote into `folder`."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"no such baselines folder: {folder} (write it with "
                                f"'walt-probe baseline --gin_file=<task file> --out {folder}')")
    out = {}
    for path in sorted(folder.glob("*.json")):
        try:
            record = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise BaselineFileError(f"{path} is not JSON ({err})") from None
        missing = [k for k in BASELINE_KEYS if not isinstance(record, dict) or k not in record]
        if missing:
            raise BaselineFileError(f"{path} is not a baseline file (no {', '.join(missing)}); "
                             f"--baselines takes the folder of 'walt-probe baseline --out'")
        out[record["task"]] = record
    if not out:
        raise FileNotFoundError(f"no baseline files (*.json) in {folder}")
    return out


def baseline_for(baselines: Mapping[str, Mapping] | None, task, metric) -> Mapping | None:
    """The task's baseline record when it scores the same metric as the probes, else None."""
    record = (baselines or {}).get(task)
    return record if record is not None and record["metric"] == metric else None


def beats_trivial(value: float, trivial: float, higher_is_better: bool) -> str:
    """'yes' / 'no' / 'tie' / 'n/a': does a probe value beat the trivial one in the metric's direction?"""
    if value is None or trivial is None or pd.isna(value) or pd.isna(trivial):
        return "n/a"
    if value == trivial:
        return "tie"
    return "yes" if (value > trivial) == bool(higher_is_better) else "no"
