"""`walt-probe report EXPERIMENT_DIR... --out DIR`: one tidy CSV, the paper's plots, summary.md.

Collects every trial under the given folders (sweep experiments and single `probe` runs):
  <dir>/**/metrics.json           ProbeResult (probing/result.py): ok / diverged / failed
  <exp>/trial_*/error.txt         Ray-level failures of a sweep trial that never wrote metrics.json
  <exp>/trials/*/trial.json       a trial that started but never finished (status 'incomplete')

CSV columns (one row per trial): experiment, trial, backbone, model, variant, size, task, block,
block_spec, num_blocks, depth, t, metric, value, higher_is_better, status, error, wall_s,
feature_source, run_dir, bindings, family, log_snr, walt_t, seed, split, test_value. `value` is
the headline on `split` (the selection split, 'val'), `test_value` on 'test' (empty when the task
has no test split or the result predates schema 3); both are empty unless status == 'ok'. A trial
without a result ('incomplete', or failed at the Ray level) shows only what its own bindings say,
never values taken from sibling trials. A metrics.json that cannot be read is a row of status
'unreadable' whose error names the file; the report goes on and summary.md lists it.

Selection and reporting (issue 17, section 2): the best cell of each task and model is picked
on the selection split ('val', mean over readout seeds) and reported on 'test' at that cell;
a task without test values is reported on 'val' and summary.md says so. A difference no larger
than the readout-seed spread is called 'level' (runners/tables.compare).

Plots (runners/plots.py): Fig. 1 relative change of the video arm vs the image arm per task and
pair; Fig. 5 metric vs the WALT-equivalent t and vs block per task (every model overlaid, the
pixel floor as a line); a block x timestep heatmap per task and model with the best cell marked;
Fig. 7 every model relative to the reference model (`--reference`, default I-WALT). Failed trials
are drawn as failed. Beside every PNG a CSV holds what its artists draw (plots.artists_table).

With `--baselines DIR` (the <task>.json files of `walt-probe baseline`), summary.md gains a
'trivial' column and says per task and model whether the best probe beats the trivial
predictor; the Fig. 5 curves draw it as a dashed line and the heatmap titles state it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd

from probing.result import ProbeResult, ResultError
from runners import plots
from runners.bindings import parse_bindings, to_bindings, trial_key
from runners.tables import (FLOOR_FAMILIES, SIZE_ORDER, BaselineFileError, arm_pairs,  # noqa: F401
                            baseline_for, beats_trivial, best_rows, compare, load_baselines,
                            model_label, model_sort_key, relative_change)
from walt.checkpoint import write_text_atomic

USES_GIN = False

COLUMNS = ["experiment", "trial", "backbone", "model", "variant", "size", "task", "block", "block_spec",
           "num_blocks", "depth", "t", "metric", "value", "higher_is_better", "status", "error",
           "wall_s", "feature_source", "run_dir", "bindings", "family", "log_snr", "walt_t", "seed",
           "split", "test_value"]
UNREADABLE = "unreadable"
# Bindings that name a row's fields, for trials that never wrote a result (their own bindings).
FIELD_BINDINGS = {"block_spec": "Probe.block", "t": "Probe.timestep", "variant": "Backbone.variant",
                  "size": "Backbone.size"}


def _row(run_dir: Path, experiment: str, bindings: Mapping, r: ProbeResult | None = None,
         status: str | None = None, error: str | None = None) -> dict:
    """One CSV row: from a ProbeResult, or (r None) a trial without one: its status, error and
    what its own bindings say."""
    row = {c: None for c in COLUMNS}
    row.update({"experiment": experiment, "trial": run_dir.name, "run_dir": str(run_dir),
                "status": status, "error": error,
                "bindings": json.dumps(bindings, sort_keys=True, default=str)})
    if r is not None:
        for c in ("backbone", "family", "variant", "size", "task", "block", "block_spec", "num_blocks",
                  "depth", "t", "metric", "higher_is_better", "wall_s", "feature_source", "status",
                  "error", "seed", "split"):
            row[c] = getattr(r, c)
        if r.noise is not None:
            row["log_snr"], row["walt_t"] = r.noise["log_snr"], r.noise["walt_t"]
        if r.status == "ok":
            row["value"] = r.value
            row["test_value"] = r.value_on("test")
    for field, key in FIELD_BINDINGS.items():
        if row.get(field) is None and key in bindings:
            row[field] = bindings[key]
    # A trial that failed before resolving its block is drawn at the block index it asked for
    # (its own setting; a depth fraction names no index, so that stays unknown).
    if row["block"] is None and isinstance(row["block_spec"], int) and not isinstance(row["block_spec"], bool):
        row["block"] = row["block_spec"]
    return row


def _sweep_base(exp: Path) -> dict | None:
    sig = exp / "sweep.json"
    return json.loads(sig.read_text())["gin"] if sig.is_file() else None


def _own_bindings(run_dir: Path) -> dict:
    """The trial's own bindings from its trial.json ({} when absent or unreadable)."""
    try:
        return parse_bindings(json.loads((run_dir / "trial.json").read_text())["bindings"])
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _collect_dir(root: Path) -> list[dict]:
    rows, seen = [], set()
    experiment = root.name
    for path in sorted(root.rglob("metrics.json")):
        run_dir = path.parent
        seen.add(run_dir.resolve())
        try:
            r = ProbeResult.read(path)  # ResultError names the file and the field
        except (ResultError, OSError, UnicodeDecodeError) as err:
            # One bad file must not hide every other result: it becomes a row that says so.
            msg = str(err) if str(path) in str(err) else f"{path}: {err}"
            rows.append(_row(run_dir, experiment, _own_bindings(run_dir), status=UNREADABLE,
                             error=f"{msg} (rerun this trial, or delete the file)"))
            continue
        rows.append(_row(run_dir, experiment, parse_bindings(r.bindings), r))
    # Trials that started but never finished (the sweep was stopped and not resumed).
    for trial in sorted(root.rglob("trial.json")):
        if trial.parent.resolve() in seen:
            continue
        bindings = _own_bindings(trial.parent)
        rows.append(_row(trial.parent, experiment, bindings, status="incomplete",
                         error="the trial did not finish (rerun the sweep command to resume it)"))
        seen.add(trial.parent.resolve())
    # Ray-level errors of trials that never wrote a result (e.g. the worker died).
    base = _sweep_base(root)
    if base is not None:
        for err in sorted(root.glob("trial_*/error.txt")):
            params = err.parent / "params.json"
            sample = json.loads(params.read_text()).get("gin", {}) if params.is_file() else {}
            own = root / "trials" / trial_key(sample, base)
            if own.resolve() in seen:
                continue
            lines = [ln for ln in err.read_text().strip().splitlines() if ln.strip()]
            rows.append(_row(own, experiment, parse_bindings(to_bindings(sample)), status="failed",
                             error=lines[-1] if lines else "failed"))
            seen.add(own.resolve())
    return rows


def collect(dirs: Sequence[str | Path]) -> pd.DataFrame:
    """The tidy table of every trial under `dirs` (see the module docstring). A result file with a
    missing or malformed field raises ResultError naming the file and the field."""
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
    df["model"] = [None if st == UNREADABLE and b is None and v is None else
                   model_label(v, s, b, f or "walt") for v, s, b, f, st in
                   zip(df.variant, df["size"], df.backbone, df.family, df.status)]
    for c in ("block", "t", "num_blocks"):
        df[c] = pd.to_numeric(df[c], errors="coerce").astype("Int64")
    for c in ("value", "test_value", "depth", "log_snr", "walt_t"):
        df[c] = pd.to_numeric(df[c], errors="coerce")
    return df.sort_values(["task", "model", "block", "t"], na_position="last").reset_index(drop=True)


def _fmt(value) -> str:
    return "-" if value is None or pd.isna(value) else f"{value:.4g}"


def _reported(r) -> str:
    """'0.8123 ± 0.012 (3 seeds)': the reported mean, its seed spread and the seed count."""
    spread = "" if pd.isna(r.spread) else f" ± {r.spread:.2g}"
    return f"{r.value:.4g}{spread} ({r.n_seeds} seed{'s' if r.n_seeds != 1 else ''})"


def _splits_lines(best: pd.DataFrame) -> list[str]:
    """Which split selected the cells and which is reported, per task, with every fallback."""
    lines = ["## Selection and reporting", "",
             "The best (block, t) cell of each task and model is **selected on `val`** (mean over "
             "readout seeds) and **reported on `test`** at that cell (mean ± standard deviation over "
             "readout seeds). A difference no larger than that spread is called **level**, never a "
             "gain.", ""]
    for task, g in best.groupby("task"):
        if g.split_reported.iloc[0] == "test":
            lines.append(f"- {task}: selected on val, reported on test")
        else:
            lines.append(f"- {task}: selected on val, reported on **val** (fallback: not every "
                         f"finished trial has a test value: the task has no test split, or its "
                         f"results predate schema 3); these numbers chose their own cells and are "
                         f"optimistic")
    return lines + [""]


def _best_table(best: pd.DataFrame, baselines: Mapping[str, Mapping] | None) -> list[str]:
    """Per task: one row per model, the pixel floor among them, and the trivial predictor's row;
    each model against the floor and the trivial predictor (gain / loss / level)."""
    trivial_col = baselines is not None
    lines = ["## Best cell per task", "",
             "| task | model | block | t | WALT t | val (selects) | reported (split) | vs pixels |"
             + (" vs trivial |" if trivial_col else ""),
             "|---|---|---|---|---|---|---|---|" + ("---|" if trivial_col else "")]
    notes = []
    for task, g in best.groupby("task"):
        hib = bool(g.higher_is_better.iloc[0])
        metric = g.metric.iloc[0]
        floor = g[g.family.isin(FLOOR_FAMILIES)]
        floor_row = floor.loc[floor.value.idxmax() if hib else floor.value.idxmin()] if len(floor) else None
        record = baseline_for(baselines, task, metric) if baselines is not None else None
        for _, r in sorted(g.iterrows(), key=lambda ir: (ir[1].family in FLOOR_FAMILIES,
                                                         model_sort_key(ir[1].model))):
            vs_pixels = "-" if floor_row is None or r.family in FLOOR_FAMILIES else \
                compare(r.value, r.spread, floor_row.value, floor_row.spread, hib)
            vs_trivial = "-" if record is None else compare(r.value, r.spread, record["value"], None, hib)
            lines.append(f"| {task} | {r.model} | {r.block} | {r.t} | {_fmt(r.walt_t)} | "
                         f"{r.select_value:.4g} | {_reported(r)} {r.split_reported} | {vs_pixels} |"
                         + (f" {vs_trivial} |" if trivial_col else ""))
        if record is not None:
            split = record.get("split", "val")
            lines.append(f"| {task} | trivial predictor | - | - | - | - | {record['value']:.4g} "
                         f"{split} | - | - |")
        direction = "higher" if hib else "lower"
        notes.append(f"- {task}: {metric} ({direction} is better)")
        if floor_row is None:
            notes.append(f"- {task}: no `pixels` result: the floor is missing (probe it with the "
                         f"pixels backbone)")
    return lines + [""] + notes + [""]


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
            rows.append(f"| {task} | {r.model} | {r.value:.4g} | {trivial:.4g} | {verdict}{margin} | "
                        f"{compare(r.value, r.spread, trivial, None, hib)} |")
    lines = ["## Best probe vs the trivial predictor", "",
             "Does the best cell beat the input-free predictor of `walt-probe baseline` (fitted on "
             "train, scored with the probes' metric code on the split the baseline file names, "
             "val when it names none)?", ""]
    if rows:
        lines += ["| task | model | best probe | trivial | beats trivial? (difference) | beyond the seed spread? |",
                  "|---|---|---|---|---|---|", *rows, ""]
        lines += [f"- {t}: {r['predictor']} (train {r.get('num_train', '?')}, val "
                  f"{r.get('num_val', '?')} items)" for t, r in used.items()]
    lines += [f"- {s}" for s in skipped]
    return lines + [""]


def summary_markdown(df: pd.DataFrame, figures: Mapping[str, str | None], notes: Sequence[str],
                     baselines: Mapping[str, Mapping] | None = None) -> str:
    """summary.md: which split selected and which reported; the best cell per task and model
    (pixel floor and trivial predictor as rows); the image / video arms; unreadable result files;
    failures; the figures."""
    lines = ["# Probe results", "",
             f"{len(df)} trials: " + ", ".join(f"{n} {s}" for s, n in df.status.value_counts().items()), ""]
    best = best_rows(df)
    if not best.empty:
        lines += _splits_lines(best)
        lines += _best_table(best, baselines)
        if baselines is not None:
            lines += _trivial_lines(best, baselines)
        pairs = []
        for task, label, i, v in arm_pairs(best):
            hib = bool(i.higher_is_better)
            rel = relative_change(v.value, i.value, hib)
            change = f"n/a ({i.model} = 0)" if pd.isna(rel) else f"{rel:+.1f}%"
            pairs.append(f"| {task} | {label} | {_reported(i)} | {_reported(v)} | {change} | "
                         f"{compare(v.value, v.spread, i.value, i.spread, hib)} |")
        if pairs:
            lines += ["## Video arm vs image arm (relative change, positive = video better)", "",
                      "| task | pair | image arm | video arm | change | verdict |",
                      "|---|---|---|---|---|---|", *pairs, ""]
    unreadable = df[df.status == UNREADABLE]
    if len(unreadable):
        lines += ["## Unreadable result files", "",
                  "Left out of every table and figure; the rest of the report is complete.", ""]
        for _, r in unreadable.iterrows():
            path = str(Path(r.run_dir) / "metrics.json")
            lines.append(f"- `{path}`: {str(r.error).replace(path + ': ', '', 1)}")
        lines.append("")
    failed = df[(df.status != "ok") & (df.status != UNREADABLE)]
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


def write_report(dirs: Sequence[str | Path], out: str | Path,
                 baselines: str | Path | Mapping[str, Mapping] | None = None,
                 reference: str = plots.DEFAULT_REFERENCE) -> dict:
    """Writes results.csv, the PNGs (each with its data CSV) and summary.md into `out`; returns
    {name: path or None}.

    baselines: None, a folder of `walt-probe baseline` files, or load_baselines()'s dict.
    reference: the model Fig. 7 sets to 100 % (a model label, or its start: 'I-WALT').
    """
    if baselines is not None and not isinstance(baselines, Mapping):
        baselines = load_baselines(baselines)
    df = collect(dirs)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    csv = out / "results.csv"
    write_text_atomic(csv, df.to_csv(index=False))
    figures, notes = plots.draw_all(df, out, baselines, reference)
    write_text_atomic(out / "summary.md", summary_markdown(df, figures, notes, baselines))
    return {"csv": str(csv), "summary": str(out / "summary.md"), **figures}


def add_arguments(parser) -> None:
    parser.add_argument("experiments", nargs="+", metavar="EXPERIMENT_DIR",
                        help="sweep experiment folders (<storage>/<name>) or probe run folders")
    parser.add_argument("--out", default=None, help="output folder (default: <first dir>/report)")
    parser.add_argument("--baselines", default=None, metavar="DIR",
                        help="folder of 'walt-probe baseline' results: adds the trivial predictor "
                             "to summary.md, the Fig. 5 curves and the heatmap titles")
    parser.add_argument("--reference", default=plots.DEFAULT_REFERENCE, metavar="MODEL",
                        help="the model Fig. 7 sets to 100 %% (a model label as in results.csv, "
                             "or its start; default %(default)s)")


def main(args, gin_args) -> int:
    import sys

    out = Path(args.out) if args.out else Path(args.experiments[0]) / "report"
    try:
        paths = write_report(args.experiments, out, args.baselines, args.reference)
    except (FileNotFoundError, BaselineFileError, ResultError) as err:
        print(f"walt-probe report: {err}", file=sys.stderr)
        return 2
    df = pd.read_csv(paths["csv"])
    if df.empty:
        print(f"walt-probe report: no trial results (metrics.json) under {', '.join(args.experiments)}",
              file=sys.stderr)
        return 1
    drawn = [k for k, v in paths.items() if v and k not in ("csv", "summary")]
    bad = int((df.status == UNREADABLE).sum())
    print(f"report: {len(df)} trials ({int((df.status == 'ok').sum())} ok"
          + (f", {bad} unreadable result file(s), listed in summary.md" if bad else "")
          + f") -> {paths['csv']}, {len(drawn)} figures, {paths['summary']}")
    return 0
