"""`walt-probe report EXPERIMENT_DIR... --out DIR`: one tidy CSV, the paper's plots, summary.md.

Collects every trial under the given folders (sweep experiments and single `probe` runs):
  <dir>/**/metrics.json           written by run_probe (ok / diverged) or by a failing trial (error)
  <exp>/trial_*/error.txt         Ray-level failures of a sweep trial that never wrote metrics.json
  <exp>/trials/*/trial.json       a trial that started but never finished (status 'incomplete')

CSV columns (one row per trial): experiment, trial, backbone, model, variant, size, task, block,
block_spec, num_blocks, depth, t, metric, value, higher_is_better, status, error, wall_s,
feature_source, run_dir. `value` is empty unless status == 'ok'.

Plots (runners/plots.py): Fig. 1 relative change V-WALT vs I-WALT per task; Fig. 5 metric vs t
and vs block per task (I and V overlaid); a block x timestep heatmap per task and model with the
best cell marked; Fig. 7 every model relative to I-WALT. Failed trials are drawn as failed.

With `--baselines DIR` (the <task>.json files of `walt-probe baseline`), summary.md gains a
'trivial' column and says per task and model whether the best probe beats the trivial
predictor; the Fig. 5 curves draw it as a dashed line and the heatmap titles state it.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from runners import gin_setup

USES_GIN = False

COLUMNS = ["experiment", "trial", "backbone", "model", "variant", "size", "task", "block", "block_spec",
           "num_blocks", "depth", "t", "metric", "value", "higher_is_better", "status", "error",
           "wall_s", "feature_source", "run_dir", "bindings"]
SIZE_ORDER = ["tiny", "small", "284m", "724m", "1p9b"]
VARIANT_LABEL = {"image": "I-WALT", "video": "V-WALT"}
# Bindings that name a row's fields, for trials that failed before they could report them.
FIELD_BINDINGS = {"block_spec": "Probe.block", "t": "Probe.timestep", "variant": "Backbone.variant",
                  "size": "Backbone.size"}


def model_label(variant, size, backbone=None) -> str:
    """'V-WALT small', 'I-WALT 284m', or the backbone's own name for non-WALT backbones."""
    if variant in VARIANT_LABEL:
        return VARIANT_LABEL[variant] + (f" {size}" if size else "")
    return str(backbone or "unknown")


def _literal(text: str):
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError):
        return text.strip()


def parse_bindings(bindings: Iterable[str]) -> dict:
    """['Probe.block = 2', ...] -> {'Probe.block': 2, ...} (references kept as text)."""
    out = {}
    for b in bindings:
        if "=" in b:
            k, v = b.split("=", 1)
            out[k.strip()] = _literal(v)
    return out


def _row_from_metrics(m: Mapping, run_dir: Path, experiment: str, bindings: Mapping) -> dict:
    row = {c: None for c in COLUMNS}
    row.update({"experiment": experiment, "trial": run_dir.name, "run_dir": str(run_dir),
                "status": m.get("status", "error"), "error": m.get("error"),
                "bindings": json.dumps(bindings, sort_keys=True, default=str)})
    for c in ("backbone", "variant", "size", "task", "block", "block_spec", "num_blocks", "depth",
              "metric", "higher_is_better", "wall_s", "feature_source"):
        row[c] = m.get(c)
    row["t"] = m.get("timestep")
    for field, key in FIELD_BINDINGS.items():
        if row.get(field) is None and key in bindings:
            row[field] = bindings[key]
    if row["status"] == "ok":
        row["value"] = m.get("value")
    return row


def _sweep_base(exp: Path) -> dict | None:
    sig = exp / "sweep.json"
    return json.loads(sig.read_text())["gin"] if sig.is_file() else None


def _collect_dir(root: Path) -> list[dict]:
    rows, seen = [], set()
    experiment = root.name
    for path in sorted(root.rglob("metrics.json")):
        run_dir = path.parent
        m = json.loads(path.read_text())
        trial = run_dir / "trial.json"
        bindings = parse_bindings(json.loads(trial.read_text())["bindings"]) if trial.is_file() else \
            parse_bindings(m.get("bindings") or [])
        rows.append(_row_from_metrics(m, run_dir, experiment, bindings))
        seen.add(run_dir.resolve())
    # Trials that started but never finished (the sweep was stopped and not resumed).
    for trial in sorted(root.rglob("trial.json")):
        if trial.parent.resolve() in seen:
            continue
        bindings = parse_bindings(json.loads(trial.read_text())["bindings"])
        rows.append(_row_from_metrics({"status": "incomplete", "error": "the trial did not finish "
                                       "(rerun the sweep command to resume it)"},
                                      trial.parent, experiment, bindings))
        seen.add(trial.parent.resolve())
    # Ray-level errors of trials that never wrote metrics.json (e.g. the worker died).
    base = _sweep_base(root)
    if base is not None:
        from runners.sweep import to_bindings, trial_key
        for err in sorted(root.glob("trial_*/error.txt")):
            params = err.parent / "params.json"
            sample = json.loads(params.read_text()).get("gin", {}) if params.is_file() else {}
            own = root / "trials" / trial_key(sample, base)
            if own.resolve() in seen:
                continue
            lines = [ln for ln in err.read_text().strip().splitlines() if ln.strip()]
            rows.append(_row_from_metrics({"status": "error", "error": lines[-1] if lines else "error"},
                                          own, experiment, parse_bindings(to_bindings(sample))))
            seen.add(own.resolve())
    return rows


def _fill_from_siblings(df: pd.DataFrame) -> pd.DataFrame:
    """Fills task/metric/model fields of failed rows from finished rows of the same experiment.

    A failed trial often dies before it knows its task's name; its siblings in the grid that
    share its variant and size do, and the grid varies only the bound fields.
    """
    ok = df[df.status == "ok"]
    ok_bindings = [json.loads(b or "{}") for b in ok.bindings]
    for i, row in df[df.status != "ok"].iterrows():
        mask = (ok.experiment == row.experiment).to_numpy()
        for key, value in json.loads(row.bindings or "{}").items():
            if key in ("Probe.block", "Probe.timestep"):
                continue
            same = mask & np.array([b.get(key) == value for b in ok_bindings], dtype=bool)
            if same.any():  # the failing binding itself matches no sibling: skip it
                mask = same
        cand = ok[mask]
        for field in ("task", "metric", "higher_is_better", "backbone", "variant", "size", "num_blocks"):
            if (row[field] is None or pd.isna(row[field])) and cand[field].nunique(dropna=True) == 1:
                df.at[i, field] = cand[field].dropna().iloc[0]
        if (row["block"] is None or pd.isna(row["block"])) and row["block_spec"] is not None:
            same = cand[cand.block_spec.astype(str) == str(row["block_spec"])]
            if same.block.nunique() == 1:
                df.at[i, "block"] = same.block.iloc[0]
            elif isinstance(row["block_spec"], int):
                df.at[i, "block"] = row["block_spec"]
    return df


def collect(dirs: Sequence[str | Path]) -> pd.DataFrame:
    """The tidy table of every trial under `dirs` (see the module docstring)."""
    rows = []
    for d in dirs:
        d = Path(d).expanduser().resolve()
        if not d.is_dir():
            raise FileNotFoundError(f"no such experiment folder: {d}")
        rows += _collect_dir(d)
    df = pd.DataFrame(rows, columns=COLUMNS)
    if df.empty:
        return df
    df = df.astype(object).where(df.notna(), None)
    df = _fill_from_siblings(df)
    df["model"] = [model_label(v, s, b) for v, s, b in zip(df.variant, df["size"], df.backbone)]
    for c in ("block", "t", "num_blocks"):
        df[c] = pd.to_numeric(df[c], errors="coerce").astype("Int64")
    df["value"] = pd.to_numeric(df["value"], errors="coerce")
    df["depth"] = pd.to_numeric(df["depth"], errors="coerce")
    return df.sort_values(["task", "model", "block", "t"], na_position="last").reset_index(drop=True)


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


class BaselineFileError(ValueError):
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


def _trivial_lines(best: pd.DataFrame, baselines: Mapping[str, Mapping]) -> list[str]:
    """The 'best probe vs trivial predictor' section: one row per task and model."""
    rows, used, skipped = [], {}, []
    for task, g in best.groupby("task"):
        record = baseline_for(baselines, task, g.metric.iloc[0])
        if record is None:
            why = "no baseline file" if task not in baselines else \
                f"the baseline scores {baselines[task]['metric']}, the probes {g.metric.iloc[0]}"
            skipped.append(f"{task}: {why}")
            continue
        used[task] = record
        hib = bool(g.higher_is_better.iloc[0])
        trivial = record["value"]
        for _, r in sorted(g.iterrows(), key=lambda ir: model_sort_key(ir[1].model)):
            verdict = beats_trivial(r.value, trivial, hib)
            margin = "" if verdict == "n/a" else f" ({r.value - trivial:+.4g})"
            rows.append(f"| {task} | {r.model} | {r.value:.4g} | {trivial:.4g} | {verdict}{margin} |")
    lines = ["## Best probe vs the trivial predictor", "",
             "Does the best cell beat the input-free predictor of `walt-probe baseline` (fitted on "
             "train, scored on val with the probes' metric code)?", ""]
    if rows:
        lines += ["| task | model | best probe | trivial | beats trivial? (difference) |",
                  "|---|---|---|---|---|", *rows, ""]
        lines += [f"- {t}: {r['predictor']} (train {r.get('num_train', '?')}, val "
                  f"{r.get('num_val', '?')} items)" for t, r in used.items()]
    lines += [f"- {s}" for s in skipped]
    return lines + [""]


def summary_markdown(df: pd.DataFrame, figures: Mapping[str, str | None], notes: Sequence[str],
                     baselines: Mapping[str, Mapping] | None = None) -> str:
    """summary.md: best value per task and model, V vs I, the trivial predictor (when given),
    failures, the figures."""
    lines = ["# Probe results", "",
             f"{len(df)} trials: " + ", ".join(f"{n} {s}" for s, n in df.status.value_counts().items()), ""]
    best = best_rows(df)
    if not best.empty:
        models = sorted(best.model.unique(), key=model_sort_key)
        extra = ["trivial"] if baselines is not None else []
        lines += ["## Best value per task (block, t of the best cell)", "",
                  "| task | metric | " + " | ".join(models + extra) + " |",
                  "|---|---|" + "---|" * (len(models) + len(extra))]
        for task, g in best.groupby("task"):
            hib = bool(g.higher_is_better.iloc[0])
            cells = []
            for m in models:
                r = g[g.model == m]
                cells.append("-" if r.empty else
                             f"{r.value.iloc[0]:.4g} (b{r.block.iloc[0]}, t{r.t.iloc[0]})")
            if extra:
                record = baseline_for(baselines, task, g.metric.iloc[0])
                cells.append("-" if record is None else f"{record['value']:.4g}")
            lines.append(f"| {task} | {g.metric.iloc[0]} ({'higher' if hib else 'lower'} is better) | "
                         + " | ".join(cells) + " |")
        lines.append("")
        if baselines is not None:
            lines += _trivial_lines(best, baselines)
        pairs = []
        for task, g in best.groupby("task"):
            for size in g["size"].dropna().unique():
                i, v = g[(g.variant == "image") & (g["size"] == size)], g[(g.variant == "video") & (g["size"] == size)]
                if len(i) and len(v):
                    rel = relative_change(v.value.iloc[0], i.value.iloc[0], bool(g.higher_is_better.iloc[0]))
                    change = "n/a (I-WALT = 0)" if pd.isna(rel) else f"{rel:+.1f}%"
                    pairs.append(f"| {task} | {size} | {i.value.iloc[0]:.4g} | {v.value.iloc[0]:.4g} | {change} |")
        if pairs:
            lines += ["## V-WALT vs I-WALT (relative change, positive = video better)", "",
                      "| task | size | I-WALT | V-WALT | change |", "|---|---|---|---|---|", *pairs, ""]
    failed = df[df.status != "ok"]
    if len(failed):
        lines += ["## Trials without a result", "", "| model | task | block | t | status | message |",
                  "|---|---|---|---|---|---|"]
        for _, r in failed.iterrows():
            msg = str(r.error or "").replace("|", "/").replace("\n", " ")[:200]
            cells = ["?" if v is None or pd.isna(v) else v for v in (r.model, r.task, r.block, r.t)]
            lines.append("| " + " | ".join(map(str, cells)) + f" | {r.status} | {msg} |")
        lines.append("")
    lines += ["## Figures", ""]
    for name, path in figures.items():
        lines.append(f"- {name}: " + (f"![{name}]({Path(path).name})" if path else "not drawn"))
    if notes:
        lines += ["", "## Notes", "", *[f"- {n}" for n in notes]]
    return "\n".join(lines) + "\n"


def model_sort_key(model: str):
    parts = str(model).split(" ")
    size = parts[1] if len(parts) > 1 else ""
    return (SIZE_ORDER.index(size) if size in SIZE_ORDER else len(SIZE_ORDER), size, parts[0])


def write_report(dirs: Sequence[str | Path], out: str | Path,
                 baselines: str | Path | Mapping[str, Mapping] | None = None) -> dict:
    """Writes results.csv, the PNGs and summary.md into `out`; returns {name: path or None}.

    baselines: None, a folder of `walt-probe baseline` files, or load_baselines()'s dict.
    """
    from runners import plots

    if baselines is not None and not isinstance(baselines, Mapping):
        baselines = load_baselines(baselines)
    df = collect(dirs)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    csv = out / "results.csv"
    gin_setup.write_text_atomic(csv, df.to_csv(index=False))
    figures, notes = plots.draw_all(df, out, baselines)
    gin_setup.write_text_atomic(out / "summary.md", summary_markdown(df, figures, notes, baselines))
    return {"csv": str(csv), "summary": str(out / "summary.md"), **figures}


def add_arguments(parser) -> None:
    parser.add_argument("experiments", nargs="+", metavar="EXPERIMENT_DIR",
                        help="sweep experiment folders (<storage>/<name>) or probe run folders")
    parser.add_argument("--out", default=None, help="output folder (default: <first dir>/report)")
    parser.add_argument("--baselines", default=None, metavar="DIR",
                        help="folder of 'walt-probe baseline' results: adds the trivial predictor "
                             "to summary.md, the Fig. 5 curves and the heatmap titles")


def main(args, gin_args) -> int:
    import sys

    out = Path(args.out) if args.out else Path(args.experiments[0]) / "report"
    try:
        paths = write_report(args.experiments, out, args.baselines)
    except (FileNotFoundError, BaselineFileError) as err:
        print(f"walt-probe report: {err}", file=sys.stderr)
        return 2
    df = pd.read_csv(paths["csv"])
    if df.empty:
        print(f"walt-probe report: no trial results (metrics.json) under {', '.join(args.experiments)}",
              file=sys.stderr)
        return 1
    drawn = [k for k, v in paths.items() if v and k not in ("csv", "summary")]
    print(f"report: {len(df)} trials ({int((df.status == 'ok').sum())} ok) -> {paths['csv']}, "
          f"{len(drawn)} figures, {paths['summary']}")
    return 0
