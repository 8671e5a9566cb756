"""Tables of the mini-study's summary from its experiment folders and trivial baselines.

    python results/mini_study/analyze.py --grid runs/sweeps/mini_grid_* \
        --cells runs/sweeps/mini_cells_* --baselines results/mini_study/baselines \
        --out results/mini_study/tables.md

Part (a): per analog and model, the best (block, t) cell of the grid, the value at the grid's
cell nearest the paper's recommendation (block 4 and 6 of 8 bracket 2/3 depth; t = 200), and the
trivial predictor. Part (b): per analog and cell, each model's mean over readout seeds with the
seed spread (|seed 0 - seed 1|), V-WALT's relative change over I-WALT, and the trivial predictor.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from runners.report import collect, load_baselines, relative_change  # noqa: E402


def _seed(bindings: str) -> int:
    return int(json.loads(bindings or "{}").get("Run.seed", 0))


def _fmt(x, digits=3) -> str:
    return "n/a" if x is None or pd.isna(x) else f"{x:.{digits}g}"


def grid_table(df: pd.DataFrame, baselines: dict) -> list[str]:
    lines = ["| analog | metric | model | best cell | best | b4 t200 | b6 t200 | trivial |",
             "|---|---|---|---|---|---|---|---|"]
    for task, g in df.groupby("task"):
        hib = bool(g.higher_is_better.iloc[0])
        trivial = baselines.get(task, {}).get("value")
        for model, m in g.groupby("model"):
            cell = m.groupby(["block", "t"])["value"].mean()
            best = cell.idxmax() if hib else cell.idxmin()
            lines.append(f"| {task.removeprefix('synthetic_')} | {m.metric.iloc[0]} {'↑' if hib else '↓'} | "
                         f"{model} | b{best[0]} t{best[1]} | {_fmt(cell[best])} | "
                         f"{_fmt(cell.get((4, 200)))} | {_fmt(cell.get((6, 200)))} | {_fmt(trivial)} |")
    return lines


def cells_table(df: pd.DataFrame, baselines: dict) -> list[str]:
    df = df.assign(seed=[_seed(b) for b in df.bindings])
    lines = ["| analog | metric | cell (I / V) | I-WALT | V-WALT | V vs I | seed spread I / V | trivial |",
             "|---|---|---|---|---|---|---|---|"]
    for (task, experiment), g in df.groupby(["task", "experiment"]):
        hib = bool(g.higher_is_better.iloc[0])
        cells = {}
        for variant, v in g.groupby("variant"):
            for (block, t), c in v.groupby(["block", "t"]):
                vals = c.sort_values("seed")["value"].tolist()
                cells.setdefault((variant, int(block), int(t)), vals)
        by_t = {}
        for (variant, block, t), vals in cells.items():
            key = t if "family" not in experiment else "best"
            by_t.setdefault(key, {})[variant] = (block, t, vals)
        for key, pair in sorted(by_t.items(), key=lambda kv: str(kv[0])):
            if set(pair) != {"image", "video"}:
                continue
            (bi, ti, vi), (bv, tv, vv) = pair["image"], pair["video"]
            mi, mv = sum(vi) / len(vi), sum(vv) / len(vv)
            spread = lambda v: abs(v[0] - v[1]) if len(v) > 1 else float("nan")  # noqa: E731
            where = f"b{bi} t{ti}" if (bi, ti) == (bv, tv) else f"b{bi} t{ti} / b{bv} t{tv}"
            label = "family best: " + where if key == "best" else where
            lines.append(f"| {task.removeprefix('synthetic_')} | {g.metric.iloc[0]} {'↑' if hib else '↓'} | "
                         f"{label} | {_fmt(mi)} | {_fmt(mv)} | {relative_change(mv, mi, hib):+.1f}% | "
                         f"{_fmt(spread(vi), 2)} / {_fmt(spread(vv), 2)} | "
                         f"{_fmt(baselines.get(task, {}).get('value'))} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", nargs="+", required=True)
    parser.add_argument("--cells", nargs="*", default=[])
    parser.add_argument("--baselines", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    baselines = load_baselines(args.baselines)
    grid = collect(args.grid)
    failed = grid[grid.status != "ok"]
    out = ["# Mini-study tables (written by results/mini_study/analyze.py)", "",
           f"## Part (a): block x timestep grid ({len(grid)} trials, {len(failed)} not ok)", "",
           *grid_table(grid[grid.status == "ok"], baselines)]
    if args.cells:
        cells = collect(args.cells)
        out += ["", f"## Part (b): cells, mean of readout seeds 0 and 1 ({len(cells)} trials, "
                f"{int((cells.status != 'ok').sum())} not ok)", "",
                *cells_table(cells[cells.status == "ok"], baselines)]
    Path(args.out).write_text("\n".join(out) + "\n")
    print("\n".join(out))


if __name__ == "__main__":
    main()
