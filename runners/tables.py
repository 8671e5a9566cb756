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


# Backbones that bound a study rather than take part in it: the floor a backbone must beat (the
# clip's own pixels / tokenizer latents, backbones/pixels.py) and the ceiling a readout can reach
# (the renderer's ground truth, backbones/oracle.py). Drawn as reference lines, never paired.
FLOOR_FAMILIES = ("pixels",)
CEILING_FAMILIES = ("oracle",)
REFERENCE_FAMILIES = FLOOR_FAMILIES + CEILING_FAMILIES
SELECTION_SPLIT, REPORT_SPLIT = "val", "test"


def reported_split(df: pd.DataFrame) -> str:
    """The split a task's numbers are reported on: 'test' when every finished trial of the task
    has a test value (the engine evaluates test whenever the task has one), else 'val' (the
    selection split: the report says so, since those numbers picked their own cells)."""
    ok = df[(df.status == "ok") & df.value.notna()]
    if "test_value" in ok and len(ok) and ok.test_value.notna().all():
        return REPORT_SPLIT
    return SELECTION_SPLIT


def best_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Per (task, model): the best (block, t) cell, selected on the selection split, reported on
    the task's reported split (`reported_split`).

    Repeats of a cell (readout seeds, `Run.seed`) are averaged before selecting, so a lucky seed
    does not pick the cell. The returned row is the cell's first trial with:
      select_value  the selection split's mean over seeds (what picked the cell)
      value         the reported split's mean over seeds at that cell
      split_reported 'test' | 'val'; n_seeds; spread: the reported values' standard deviation
      over seeds (ddof 1; NaN with one seed); lo, hi: their min and max.
    """
    ok = df[(df.status == "ok") & df.value.notna()]
    out = []
    for task, by_task in ok.groupby("task", sort=False):
        split = reported_split(by_task)
        for _, g in by_task.groupby("model", sort=False):
            hib = bool(g.higher_is_better.iloc[0])
            cells = g.assign(_b=g.block.astype(object), _t=g.t.astype(object)).groupby(
                ["_b", "_t"], sort=False, dropna=False)
            means = cells.value.mean()
            cell = means.idxmax() if hib else means.idxmin()
            members = g.loc[cells.groups[cell]]
            reported = (members.test_value if split == REPORT_SPLIT else members.value).astype(float)
            row = members.iloc[0].copy()
            row["select_value"] = float(means[cell])
            row["value"] = float(reported.mean())
            row["split_reported"] = split
            row["n_seeds"] = int(reported.size)
            row["spread"] = float(reported.std(ddof=1)) if reported.size > 1 else float("nan")
            row["lo"], row["hi"] = float(reported.min()), float(reported.max())
            out.append(row)
    extra = ["select_value", "split_reported", "n_seeds", "spread", "lo", "hi"]
    return pd.DataFrame(out, columns=[*df.columns, *[c for c in extra if c not in df.columns]])


def compare(value: float, spread_a: float, other: float, spread_b: float,
            higher_is_better: bool) -> str:
    """'gain' / 'loss' / 'level' of `value` against `other` in the metric's direction.

    'level' when the difference is no larger than the readout-seed spread (the larger standard
    deviation of the two; a missing one counts as 0): such a difference is seed noise, never a
    gain. Without any spread (one seed each) the verdict says so: 'gain (1 seed)'.
    """
    if value is None or other is None or pd.isna(value) or pd.isna(other):
        return "n/a"
    spreads = [s for s in (spread_a, spread_b) if s is not None and not pd.isna(s)]
    spread = max(spreads) if spreads else 0.0
    diff = value - other
    if abs(diff) <= spread:
        return "level"
    verdict = "gain" if (diff > 0) == bool(higher_is_better) else "loss"
    return verdict if spreads else f"{verdict} (1 seed, spread unknown)"


def arm_pairs(best: pd.DataFrame) -> list[tuple]:
    """The image / video arms of each task: [(task, label, image row, video row)].

    Arms pair within a family by name, not only by equal size: WALT pairs I-WALT and V-WALT of
    the same size (label: the size); another family pairs its image model with its video model
    (PixArt-alpha / Latte, SD1.5-UNet / AnimateDiff: different sizes), labelled
    'video model vs image model'. A family with several image or video models and no equal sizes
    pairs nothing (ambiguous). Floor and ceiling backbones never pair.
    """
    pairs = []
    for task, g in best.groupby("task", sort=True):
        for family, f in g.groupby(g.family.fillna("walt"), sort=True):
            if family in REFERENCE_FAMILIES:
                continue
            images, videos = f[f.variant == "image"], f[f.variant == "video"]
            used = set()
            for _, i in sorted(images.iterrows(), key=lambda ir: model_sort_key(ir[1].model)):
                same = videos[videos["size"] == i["size"]]
                if len(same):
                    v = same.iloc[0]
                elif len(images) == 1 and len(videos) == 1:
                    v = videos.iloc[0]
                else:
                    continue
                if v.model in used:
                    continue
                used.add(v.model)
                label = str(i["size"]) if family == "walt" else f"{v.model} vs {i.model}"
                pairs.append((task, label, i, v))
    return pairs


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
