"""The paper's comparison plots, drawn from the tidy results table of runners/report.py.

  fig1_relative_change   Fig. 1: (V - I) / |I| per task, sign flipped for lower-is-better metrics
  fig5_curves            Fig. 5: metric vs t (at each model's best block) and vs block (at its best t)
  heatmap                block x timestep per task and model, best cell outlined, failures hatched
  fig7_relative          Fig. 7: every model relative to I-WALT (= 100 %) per task

Every value is the best finished trial of its (task, model) unless a panel fixes an axis.
Given baselines (runners/report.load_baselines), the trivial predictor's value is a dashed line
on the Fig. 5 curves and is stated in the heatmap titles.
Failed trials (status != 'ok') never become numbers: hatched cells, red crosses, 'failed' labels.
Scattered single cells (e.g. each model at its own best cell) get no Fig. 5 curve unless two cells
of one model share a block or a t, and no heatmap unless a block has two t and a t two blocks;
summary.md's notes say so.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "Agg")

import matplotlib  # noqa: E402
import matplotlib.ticker  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from runners.tables import (baseline_for, beats_trivial, best_rows, model_sort_key,  # noqa: E402
                            relative_change)

DPI = 130
COLORS = {"I-WALT": "#1f77b4", "V-WALT": "#d62728"}
T_LABEL = "noise timestep t (0 = clean input, 999 = pure noise)"


def _direction(hib: bool) -> str:
    return "higher is better" if hib else "lower is better"


def _color(model: str, i: int) -> str:
    family = str(model).split(" ")[0]
    return COLORS.get(family) or plt.cm.tab10(i % 10)


def _models(df: pd.DataFrame) -> list[str]:
    return sorted(df.model.dropna().unique(), key=model_sort_key)


def _tick_style(n: int) -> dict:
    # More than a handful of two-line task labels overlap; slant them instead.
    return {"rotation": 30, "ha": "right", "rotation_mode": "anchor"} if n > 5 else {}


def _save(fig, path: Path) -> str:
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return str(path)


def _slug(text) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in str(text))


def _task_label(df: pd.DataFrame, task: str) -> str:
    """'depth\nabsrel (lower better)': the task with its metric and direction."""
    g = df[(df.task == task) & df.metric.notna()]
    if g.empty:
        return str(task)
    hib = bool(g.higher_is_better.iloc[0])
    return f"{task}\n{g.metric.iloc[0]} ({'higher' if hib else 'lower'} better)"


def fig1_relative_change(df: pd.DataFrame, path: Path) -> str | None:
    """Bars of V-WALT vs I-WALT per task (one bar group per size); None without a pair."""
    best = best_rows(df)
    bars = []
    for task, g in best.groupby("task"):
        for size in sorted(g["size"].dropna().unique(), key=lambda s: model_sort_key(f"x {s}")):
            i = g[(g.variant == "image") & (g["size"] == size)]
            v = g[(g.variant == "video") & (g["size"] == size)]
            if len(i) and len(v):
                bars.append((task, size, relative_change(v.value.iloc[0], i.value.iloc[0],
                                                         bool(g.higher_is_better.iloc[0]))))
    failed_tasks = sorted(set(df[df.status != "ok"].task.dropna()) - {b[0] for b in bars})
    if not bars:
        return None
    sizes = sorted({b[1] for b in bars}, key=lambda s: model_sort_key(f"x {s}"))
    tasks = sorted({b[0] for b in bars}) + failed_tasks
    width = 0.8 / len(sizes)
    fig, ax = plt.subplots(figsize=(max(7, 1.2 * len(tasks) + 3), 4.4), layout="constrained")
    for j, size in enumerate(sizes):
        xs = [tasks.index(b[0]) + (j - (len(sizes) - 1) / 2) * width for b in bars if b[1] == size]
        ys = [b[2] for b in bars if b[1] == size]
        rects = ax.bar(xs, ys, width=width * 0.9, label=f"{size}",
                       color=["#2ca02c" if y >= 0 else "#9467bd" for y in ys])
        ax.bar_label(rects, fmt="%+.1f%%", padding=3, fontsize=8)
    for task in failed_tasks:
        ax.text(tasks.index(task), 0, "failed", ha="center", va="bottom", color="red", fontsize=9)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(range(len(tasks)), [_task_label(df, t) for t in tasks],
                  **_tick_style(len(tasks)))
    ax.set_ylabel("relative change of V-WALT vs I-WALT (%)\n(> 0: video model better)")
    ax.set_title("Video vs image diffusion features per task (Fig. 1)\n"
                 "best block x t per model; sign flipped for lower-is-better metrics")
    if len(sizes) > 1:
        ax.legend(title="model size")
    ax.margins(y=0.2)
    return _save(fig, path)


def _curve(ax, df: pd.DataFrame, x: str, fixed: str, models: list[str], hib: bool) -> None:
    for i, model in enumerate(models):
        g = df[df.model == model]
        ok = g[(g.status == "ok") & g.value.notna()]
        if ok.empty:
            continue
        best = ok.loc[ok.value.idxmax() if hib else ok.value.idxmin()]
        line = ok[ok[fixed] == best[fixed]].sort_values(x)
        ax.plot(line[x].astype(float), line.value, marker="o", color=_color(model, i),
                label=f"{model} ({fixed} = {best[fixed]})")
        bad = g[(g.status != "ok") & (g[fixed] == best[fixed]) & g[x].notna()]
        if len(bad):
            ax.plot(bad[x].astype(float), [ax.get_ylim()[0]] * len(bad), "x", color="red", ms=9,
                    mew=2, clip_on=False, label=f"{model}: failed trial")


def _trivial_line(ax, trivial) -> None:
    """The trivial predictor's value as a dashed horizontal line (legend entry included)."""
    if trivial is not None and not pd.isna(trivial["value"]):
        ax.axhline(trivial["value"], color="0.35", ls="--", lw=1.3,
                   label=f"trivial predictor ({trivial['value']:.3g})")


def fig5_curves(df: pd.DataFrame, task: str, path: Path, trivial=None) -> str | None:
    """Metric vs t and vs block for one task, one line per model; None without results.

    trivial: the task's baseline record (report.baseline_for), drawn as a dashed line.
    """
    g = df[df.task == task]
    if not ((g.status == "ok") & g.value.notna()).any():
        return None
    hib = bool(g[g.status == "ok"].higher_is_better.iloc[0])
    metric = g[g.status == "ok"].metric.iloc[0]
    models = _models(g)
    fig, (ax_t, ax_b) = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    for ax in (ax_t, ax_b):  # first, so the failed-trial markers see the full y range
        _trivial_line(ax, trivial)
    _curve(ax_t, g, "t", "block", models, hib)
    _curve(ax_b, g, "block", "t", models, hib)
    ax_t.set_xlabel(T_LABEL)
    ax_b.set_xlabel("block (0 = embedding output, L = last block)")
    ax_b.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    for ax, title in ((ax_t, "vs noise level (at each model's best block)"),
                      (ax_b, "vs depth (at each model's best t)")):
        ax.set_ylabel(f"{metric} ({_direction(hib)})")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{task}: where the features are best (Fig. 5)")
    return _save(fig, path)


def heatmap(df: pd.DataFrame, task: str, model: str, path: Path, trivial=None) -> str | None:
    """Block (rows, 0 at the top) x timestep (columns) of one task and model; None if empty.

    trivial: the task's baseline record (report.baseline_for), stated in the title.
    """
    g = df[(df.task == task) & (df.model == model) & df.block.notna() & df.t.notna()]
    if g.empty:
        return None
    ok = g[(g.status == "ok") & g.value.notna()]
    blocks = sorted(int(b) for b in g.block.unique())
    ts = sorted(int(t) for t in g.t.unique())
    grid = np.full((len(blocks), len(ts)), np.nan)
    for _, r in ok.iterrows():
        grid[blocks.index(int(r.block)), ts.index(int(r.t))] = r.value
    hib = bool(ok.higher_is_better.iloc[0]) if len(ok) else True
    metric = ok.metric.iloc[0] if len(ok) else (g.metric.dropna().iloc[0] if g.metric.notna().any() else "metric")
    fig, ax = plt.subplots(figsize=(max(6.5, 1.0 * len(ts) + 3), 0.55 * len(blocks) + 2.3),
                           layout="constrained")
    # Colour runs so that "better" is always bright, whatever the metric's direction.
    im = ax.imshow(grid, cmap="viridis" if hib else "viridis_r", aspect="auto")
    cbar = fig.colorbar(im, ax=ax)
    cbar.set_label(f"{metric} ({_direction(hib)}; bright = better)")
    finite = grid[np.isfinite(grid)]
    mid = (finite.min() + finite.max()) / 2 if finite.size else 0
    for (bi, ti), v in np.ndenumerate(grid):
        if np.isfinite(v):
            dark = (v < mid) if hib else (v > mid)
            ax.text(ti, bi, f"{v:.3g}", ha="center", va="center", fontsize=8,
                    color="white" if dark else "black")
    for _, r in g[g.status != "ok"].iterrows():
        bi, ti = blocks.index(int(r.block)), ts.index(int(r.t))
        ax.add_patch(plt.Rectangle((ti - 0.5, bi - 0.5), 1, 1, fill=False, hatch="xx", color="red", lw=0))
        ax.text(ti, bi, f"{r.status} (no value)", ha="center", va="center", fontsize=7, color="red",
                bbox={"facecolor": "white", "edgecolor": "none", "pad": 1})
    if finite.size:
        bi, ti = np.unravel_index(np.nanargmax(grid) if hib else np.nanargmin(grid), grid.shape)
        ax.add_patch(plt.Rectangle((ti - 0.5, bi - 0.5), 1, 1, fill=False, ec="white", lw=3))
        ax.add_patch(plt.Rectangle((ti - 0.5, bi - 0.5), 1, 1, fill=False, ec="black", lw=1.2, ls="--"))
    ax.set_xticks(range(len(ts)), ts)
    ax.set_yticks(range(len(blocks)), blocks)
    ax.set_xlabel(T_LABEL)
    ax.set_ylabel("block (0 = embedding output)")
    title = f"{task} - {model}\nblock x timestep (best cell outlined, failed trials hatched)"
    if trivial is not None:
        best = (np.nanmax(grid) if hib else np.nanmin(grid)) if finite.size else float("nan")
        verdict = {"yes": "beaten by the best cell", "no": "NOT beaten by any cell",
                   "tie": "tied by the best cell", "n/a": "no cell to compare"}
        title += (f"\ntrivial predictor: {trivial['value']:.3g} "
                  f"({verdict[beats_trivial(best, trivial['value'], hib)]})")
    ax.set_title(title)
    return _save(fig, path)


def fig7_relative(df: pd.DataFrame, path: Path) -> tuple[str | None, str | None]:
    """Each model's best value relative to I-WALT (100 %) per task; (path, baseline) or (None, why)."""
    best = best_rows(df)
    base_models = [m for m in _models(best) if str(m).startswith("I-WALT")]
    if not base_models:
        return None, "no finished I-WALT trial to use as the 100 % baseline"
    base = base_models[0]
    tasks = sorted(best.task.unique())
    models = [m for m in _models(best) if m != base]
    fig, ax = plt.subplots(figsize=(max(7, 1.3 * len(tasks) + 3), 4.6), layout="constrained")
    ax.axhline(100, color="black", ls="--", lw=1, label=f"{base} baseline (100 %)")
    n = len(models)
    for i, model in enumerate(models):
        xs, ys = [], []
        for k, task in enumerate(tasks):
            g = best[best.task == task]
            b, m = g[g.model == base], g[g.model == model]
            if len(b) and len(m):
                xs.append(k + (i - (n - 1) / 2) * 0.8 / max(n, 1))
                ys.append(100 + relative_change(m.value.iloc[0], b.value.iloc[0], bool(g.higher_is_better.iloc[0])))
        if xs:
            size = str(model).split(" ")[-1]
            ms = 6 + 3 * (model_sort_key(model)[0] if size else 0)
            ax.plot(xs, ys, "o", ms=ms, color=_color(model, i), label=model)
    failed = df[df.status != "ok"]
    for k, task in enumerate(tasks):
        if (failed.task == task).any():
            ax.annotate(f"{int((failed.task == task).sum())} failed", (k, 100), xytext=(0, -18),
                        textcoords="offset points", ha="center", color="red", fontsize=8)
    ax.set_xticks(range(len(tasks)), [_task_label(df, t) for t in tasks],
                  **_tick_style(len(tasks)))
    ax.set_ylabel(f"performance relative to {base} (%)\n(> 100: better; lower-is-better metrics inverted)")
    ax.set_title(f"Every model against {base} (Fig. 7)\nbest block x t per model; marker size grows with model size")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path), base


def draw_all(df: pd.DataFrame, out: Path, baselines=None) -> tuple[dict, list[str]]:
    """Every plot the table supports, into `out`; returns ({name: path or None}, notes).

    baselines: None or {task: baseline record} (report.load_baselines).
    """
    figures, notes = {}, []
    if df.empty:
        return figures, ["no trials found"]
    figures["fig1_relative_change"] = fig1_relative_change(df, out / "fig1_relative_change.png")
    if figures["fig1_relative_change"] is None:
        notes.append("Fig. 1 needs finished I-WALT and V-WALT trials of the same size and task")
    path, why = fig7_relative(df, out / "fig7_relative_to_iwalt.png")
    figures["fig7_relative_to_iwalt"] = path
    if path is None:
        notes.append(f"Fig. 7 not drawn: {why}")
    no_curve, no_grid = [], []
    for task in sorted(df.task.dropna().unique()):
        g = df[df.task == task]
        metrics = g.metric.dropna()
        trivial = baseline_for(baselines, task, metrics.iloc[0]) if len(metrics) else None
        if any(_has_curve(g[g.model == m]) for m in _models(g)):
            figures[f"fig5_{task}"] = fig5_curves(df, task, out / f"fig5_{_slug(task)}.png", trivial)
        else:
            no_curve.append(task)
        for model in _models(g):
            if not _has_grid(g[g.model == model]):
                no_grid.append(f"{task} {model}")
                continue
            name = f"heatmap_{task}_{model}"
            figures[name] = heatmap(df, task, model, out / f"heatmap_{_slug(task)}_{_slug(model)}.png",
                                    trivial)
    if no_curve:
        notes.append("Fig. 5 not drawn (no two cells of one model share a block or a t): " + ", ".join(no_curve))
    if no_grid:
        notes.append("heatmap not drawn (no block at two t and t at two blocks): " + ", ".join(no_grid))
    return figures, notes


def _cells(g: pd.DataFrame) -> pd.DataFrame:
    return g[["block", "t"]].dropna().drop_duplicates()


def _has_curve(g: pd.DataFrame) -> bool:
    """Whether one model's trials of one task draw a line: two cells sharing a block or a t."""
    cells = _cells(g)
    return bool(cells.duplicated("block").any() or cells.duplicated("t").any())


def _has_grid(g: pd.DataFrame) -> bool:
    """Whether one model's trials of one task draw a line along both axes: some block at two
    timesteps and some timestep at two blocks (scattered cells make a mostly empty heatmap)."""
    cells = _cells(g)
    return bool(cells.duplicated("block").any() and cells.duplicated("t").any())
