"""`walt-probe report EXPERIMENT_DIR... --out DIR`: one tidy CSV, the paper's plots, summary.md.

Collects every trial under the given folders (sweep experiments and single `probe` runs):
  <dir>/**/metrics.json           ProbeResult (probing/result.py): ok / diverged / failed
  <exp>/trial_*/error.txt         Ray-level failures of a sweep trial that never wrote metrics.json
  <exp>/trials/*/trial.json       a trial that started but never finished (status 'incomplete')

CSV columns (one row per trial): experiment, trial, backbone, model, variant, size, task, block,
block_spec, num_blocks, depth, t, metric, value, higher_is_better, status, error, wall_s,
feature_source, run_dir, bindings, family, log_snr, walt_t, seed, split. `value` is empty unless
status == 'ok'. A trial without a result ('incomplete', or failed at the Ray level) shows only
what its own bindings say, never values taken from sibling trials.

Plots (runners/plots.py): Fig. 1 relative change V-WALT vs I-WALT per task; Fig. 5 metric vs t
and vs block per task (I and V overlaid); a block x timestep heatmap per task and model with the
best cell marked; Fig. 7 every model relative to I-WALT. Failed trials are drawn as failed.

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
from runners.tables import (SIZE_ORDER, BaselineFileError, baseline_for, beats_trivial,  # noqa: F401
                            best_rows, load_baselines, model_label, model_sort_key, relative_change)
from walt.checkpoint import write_text_atomic

USES_GIN = False

COLUMNS = ["experiment", "trial", "backbone", "model", "variant", "size", "task", "block", "block_spec",
           "num_blocks", "depth", "t", "metric", "value", "higher_is_better", "status", "error",
           "wall_s", "feature_source", "run_dir", "bindings", "family", "log_snr", "walt_t", "seed",
           "split"]
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


def _collect_dir(root: Path) -> list[dict]:
    rows, seen = [], set()
    experiment = root.name
    for path in sorted(root.rglob("metrics.json")):
        run_dir = path.parent
        r = ProbeResult.read(path)  # ResultError names the file and the field
        rows.append(_row(run_dir, experiment, parse_bindings(r.bindings), r))
        seen.add(run_dir.resolve())
    # Trials that started but never finished (the sweep was stopped and not resumed).
    for trial in sorted(root.rglob("trial.json")):
        if trial.parent.resolve() in seen:
            continue
        bindings = parse_bindings(json.loads(trial.read_text())["bindings"])
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
    df["model"] = [model_label(v, s, b, f or "walt") for v, s, b, f in
                   zip(df.variant, df["size"], df.backbone, df.family)]
    for c in ("block", "t", "num_blocks"):
        df[c] = pd.to_numeric(df[c], errors="coerce").astype("Int64")
    for c in ("value", "depth", "log_snr", "walt_t"):
        df[c] = pd.to_numeric(df[c], errors="coerce")
    return df.sort_values(["task", "model", "block", "t"], na_position="last").reset_index(drop=True)


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


def write_report(dirs: Sequence[str | Path], out: str | Path,
                 baselines: str | Path | Mapping[str, Mapping] | None = None) -> dict:
    """Writes results.csv, the PNGs and summary.md into `out`; returns {name: path or None}.

    baselines: None, a folder of `walt-probe baseline` files, or load_baselines()'s dict.
    """
    if baselines is not None and not isinstance(baselines, Mapping):
        baselines = load_baselines(baselines)
    df = collect(dirs)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    csv = out / "results.csv"
    write_text_atomic(csv, df.to_csv(index=False))
    figures, notes = plots.draw_all(df, out, baselines)
    write_text_atomic(out / "summary.md", summary_markdown(df, figures, notes, baselines))
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
    except (FileNotFoundError, BaselineFileError, ResultError) as err:
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
