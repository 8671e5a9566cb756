"""The paper's comparison plots, drawn from the tidy results table of runners/report.py.

  fig1_relative_change   Fig. 1: (video - image) / |image| per task and arm pair (tables.arm_pairs),
                         sign flipped for lower-is-better metrics; whiskers: the seed spread
  fig5_curves            Fig. 5: metric vs the WALT-equivalent t (at each model's best block) and
                         vs block (at its best t), error bars over readout seeds; the pixel floor,
                         the oracle and the trivial predictor as horizontal lines
  heatmap                block x timestep per task and model (selection split, mean over seeds),
                         best cell outlined, failures hatched
  fig7_relative          Fig. 7: every model relative to a reference model (= 100 %) per task

Every value is the best cell of its (task, model), selected on val and reported on the task's
reported split (tables.best_rows), unless a panel fixes an axis. The noise axis is the shared one
(ProbeResult.noise['walt_t']: the WALT timestep of the same SNR), so families share an x-axis.
Given baselines (runners/report.load_baselines), the trivial predictor's value is a dashed line
on the Fig. 5 curves and is stated in the heatmap titles.
Beside every PNG, `<name>.csv` lists what its artists draw (`artists_table`: one row per point of
every line, bar and error bar, read back from the figure), so tests and readers check content.
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
import matplotlib.container  # noqa: E402
import matplotlib.ticker  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from runners.tables import (CEILING_FAMILIES, FLOOR_FAMILIES, REFERENCE_FAMILIES,  # noqa: E402
                            SIZE_ORDER, arm_pairs, baseline_for, beats_trivial, best_rows, compare,
                            model_sort_key, relative_change, reported_split)

DPI = 130
COLORS = {"I-WALT": "#1f77b4", "V-WALT": "#d62728"}
T_LABEL = "noise timestep t (0 = clean input, 999 = pure noise)"
SHARED_T_LABEL = "WALT-equivalent t (same SNR; 0 = clean, 999 = pure noise)"
DEFAULT_REFERENCE = "I-WALT"


def _direction(hib: bool) -> str:
    return "higher is better" if hib else "lower is better"


# Other models take tab10 without the two WALT colours, so no model is drawn in I- or V-WALT's.
_OTHER_COLORS = [plt.cm.tab10(k) for k in range(10) if k not in (0, 3)]


def _color(model: str, i: int) -> str:
    family = str(model).split(" ")[0]
    return COLORS.get(family) or _OTHER_COLORS[i % len(_OTHER_COLORS)]


def _models(df: pd.DataFrame) -> list[str]:
    return sorted(df.model.dropna().unique(), key=model_sort_key)


def _tick_style(n: int) -> dict:
    # More than a handful of two-line task labels overlap; slant them instead.
    return {"rotation": 30, "ha": "right", "rotation_mode": "anchor"} if n > 5 else {}


def artists_table(fig) -> pd.DataFrame:
    """What a figure draws, read back from its artists: one row per point.

    Columns: panel (the axes index), title, kind ('line' | 'bar' | 'errorbar' | 'cell'), label, x,
    y, err (half the error bar; NaN without one), tick (the x tick label nearest a bar or
    error-bar point; for a heatmap cell, its row's label: x is its column's label, y its value).
    Error-bar containers are listed once ('errorbar'; their data line is not repeated); bars give
    their centre and height. Lines include reference lines (axhline: x in axes units 0 and 1).
    """
    rows = []
    for k, ax in enumerate(fig.axes):
        title = ax.get_title()
        ticks = [(float(p), t.get_text()) for p, t in zip(ax.get_xticks(), ax.get_xticklabels())]

        def tick(x):
            return min(ticks, key=lambda pt: abs(pt[0] - x))[1] if ticks else ""

        in_containers = set()
        for c in ax.containers:
            if isinstance(c, matplotlib.container.ErrorbarContainer):
                line, caps, bars = c.lines
                in_containers.update(caps)  # the whisker caps are markers, not data
                segments = bars[0].get_segments() if bars else []
                # a whisker with a NaN end (one seed: no spread) is an empty segment
                errs = [abs(seg[1][1] - seg[0][1]) / 2 if len(seg) >= 2 else float("nan")
                        for seg in segments]
                if line is not None:
                    in_containers.add(line)
                    xs, ys = line.get_xdata(), line.get_ydata()
                else:  # fmt='none': only the whiskers, centred on the values
                    whole = [seg for seg in segments if len(seg) >= 2]
                    xs = [seg[0][0] for seg in whole]
                    ys = [(seg[0][1] + seg[1][1]) / 2 for seg in whole]
                    errs = [abs(seg[1][1] - seg[0][1]) / 2 for seg in whole]
                for j, (x, y) in enumerate(zip(xs, ys)):
                    rows.append((k, title, "errorbar", c.get_label(), float(x), float(y),
                                 float(errs[j]) if j < len(errs) else float("nan"), tick(float(x))))
            elif isinstance(c, matplotlib.container.BarContainer):
                for rect in c.patches:
                    x = rect.get_x() + rect.get_width() / 2
                    rows.append((k, title, "bar", c.get_label(), x, rect.get_height(),
                                 float("nan"), tick(x)))
        # Images (heatmaps): one row per finite cell, x = its column's tick label (t), y = the
        # value, tick = its row's tick label (block).
        xlabels = [t.get_text() for t in ax.get_xticklabels()]
        ylabels = [t.get_text() for t in ax.get_yticklabels()]
        for im in ax.images:
            grid = np.ma.filled(np.ma.asarray(im.get_array(), dtype=float), np.nan)
            if grid.ndim != 2 or len(xlabels) != grid.shape[1] or len(ylabels) != grid.shape[0]:
                continue
            for (r, c), v in np.ndenumerate(grid):
                if np.isfinite(v):
                    rows.append((k, title, "cell", "", float(xlabels[c]), float(v), float("nan"),
                                 ylabels[r]))
        for line in ax.get_lines():
            if line in in_containers:
                continue
            for x, y in zip(line.get_xdata(), line.get_ydata()):
                rows.append((k, title, "line", line.get_label(), float(x), float(y), float("nan"), ""))
    return pd.DataFrame(rows, columns=["panel", "title", "kind", "label", "x", "y", "err", "tick"])


def _save(fig, path: Path) -> str:
    """The PNG and, beside it, the CSV of what it draws (artists_table)."""
    from walt.checkpoint import write_text_atomic

    path = Path(path)
    write_text_atomic(path.with_suffix(".csv"), artists_table(fig).to_csv(index=False))
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


def _relative_spread(i, v) -> float:
    """The seed spread of a relative change in percent: the larger arm's standard deviation over
    |image arm| (the same spread `tables.compare` calls 'level' within); 0 without seeds."""
    spreads = [x for x in (i.spread, v.spread) if not pd.isna(x)]
    if not spreads or i.value == 0:
        return 0.0
    return 100.0 * max(spreads) / abs(i.value)


def fig1_relative_change(df: pd.DataFrame, path: Path) -> str | None:
    """Bars of the video arm vs the image arm per task (one bar group per pair, tables.arm_pairs),
    whiskers = the seed spread; bars within their whisker are grey and labelled 'level'. None
    without a pair."""
    best = best_rows(df)
    bars = [(task, label, relative_change(v.value, i.value, bool(i.higher_is_better)),
             _relative_spread(i, v), compare(v.value, v.spread, i.value, i.spread, bool(i.higher_is_better)))
            for task, label, i, v in arm_pairs(best)]
    failed_tasks = sorted(set(df[~df.status.isin(["ok", "unreadable"])].task.dropna()) - {b[0] for b in bars})
    if not bars:
        return None
    labels = list(dict.fromkeys(b[1] for b in bars))
    tasks = sorted({b[0] for b in bars}) + failed_tasks
    width = 0.8 / len(labels)
    fig, ax = plt.subplots(figsize=(max(7, 1.2 * len(tasks) + 3), 4.4), layout="constrained")
    handles = []
    for j, label in enumerate(labels):
        mine = [b for b in bars if b[1] == label]
        xs = [tasks.index(b[0]) + (j - (len(labels) - 1) / 2) * width for b in mine]
        ys, errs = [b[2] for b in mine], [b[3] for b in mine]
        color = "#2ca02c" if len(labels) == 1 else _OTHER_COLORS[j % len(_OTHER_COLORS)]
        rects = ax.bar(xs, ys, width=width * 0.9, label=label, color=color)
        for rect, b in zip(rects, mine):
            if b[4] == "level":  # within the seed spread: hatched and pale, never a gain
                rect.set_alpha(0.45)
                rect.set_hatch("//")
        ax.errorbar(xs, ys, yerr=errs, fmt="none", ecolor="black", capsize=3, lw=1,
                    label=f"{label}: seed spread")
        ax.bar_label(rects, labels=[f"{b[2]:+.1f}%" + (" level" if b[4] == "level" else "") for b in mine],
                     padding=3, fontsize=8)
        handles.append(rects)
    for task in failed_tasks:
        ax.text(tasks.index(task), 0, "failed", ha="center", va="bottom", color="red", fontsize=9)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(range(len(tasks)), [_task_label(df, t) for t in tasks],
                  **_tick_style(len(tasks)))
    ax.set_ylabel("relative change, video arm vs image arm (%)\n(> 0: video model better)")
    ax.set_title("Video vs image diffusion features per task (Fig. 1)\ncell selected on val, "
                 "reported on test; whiskers: readout-seed spread\nhatched: level (within the spread)",
                 fontsize=10)
    ax.legend(handles=handles, title="pair (WALT: size)", fontsize=8)
    ax.margins(y=0.2)
    return _save(fig, path)


def _x_noise(df: pd.DataFrame) -> tuple[pd.DataFrame, str, str]:
    """The table with the noise column Fig. 5 plots against, that column and its axis label.

    The shared 'walt_t' (the WALT timestep of the same SNR) whenever a result carries one, so
    families share an axis; a backbone without noise (an encoder: clean frames) sits at 0, the
    clean end. Without any noise level (results of unknown schedule) the native 't'."""
    if df.walt_t.notna().any():
        clean = df.walt_t.isna() & df.t.notna()
        return df.assign(walt_t=df.walt_t.where(~clean, 0.0)), "walt_t", \
            SHARED_T_LABEL + ("\nencoders without noise at 0" if clean.any() else "")
    return df, "t", T_LABEL


def _cell_stats(cells: pd.DataFrame, split: str) -> pd.DataFrame:
    """Mean and seed std of the reported split per (block, t) cell, with its x columns."""
    col = "test_value" if split == "test" else "value"
    return (cells.groupby(["block", "t"], dropna=False)
            .agg(y=(col, "mean"), err=(col, "std"), walt_t=("walt_t", "first"),
                 depth=("depth", "first")).reset_index())


def _curve(ax, df: pd.DataFrame, x: str, fixed: str, models: list[str], best: pd.DataFrame,
           split: str) -> None:
    """One line per model along `x`, at the model's best `fixed` (selected on val), y = the
    reported split's mean with the seed spread as error bars."""
    for i, model in enumerate(models):
        g = df[df.model == model]
        ok = g[(g.status == "ok") & g.value.notna()]
        b = best[best.model == model]
        if ok.empty or b.empty:
            continue
        at = b[fixed].iloc[0]
        stats = _cell_stats(ok[ok[fixed] == at], split).sort_values(x)
        ax.errorbar(stats[x].astype(float), stats.y, yerr=stats.err.fillna(0), marker="o", capsize=3,
                    color=_color(model, i), label=f"{model} ({fixed} = {at})")
        bad = g[(g.status != "ok") & (g[fixed] == at) & g[x].notna()]
        if len(bad):
            ax.plot(bad[x].astype(float), [ax.get_ylim()[0]] * len(bad), "x", color="red", ms=9,
                    mew=2, clip_on=False, label=f"{model}: failed trial")


def _trivial_line(ax, trivial) -> None:
    """The trivial predictor's value as a dashed horizontal line (legend entry included)."""
    if trivial is not None and not pd.isna(trivial["value"]):
        ax.axhline(trivial["value"], color="0.35", ls="--", lw=1.3,
                   label=f"trivial predictor ({trivial['value']:.3g})")


def _reference_lines(ax, best: pd.DataFrame) -> None:
    """The pixel floor (dotted) and the oracle ceiling (dash-dot): each such model's best value."""
    for _, r in best[best.family.isin(REFERENCE_FAMILIES)].iterrows():
        kind = "pixel floor" if r.family in FLOOR_FAMILIES else "oracle"
        ax.axhline(r.value, color="0.2" if kind == "pixel floor" else "#ff7f0e",
                   ls=":" if kind == "pixel floor" else "-.", lw=1.5,
                   label=f"{kind}: {r.model} ({r.value:.3g})")


def fig5_curves(df: pd.DataFrame, task: str, path: Path, trivial=None) -> str | None:
    """Metric vs the shared noise axis and vs block for one task, one line per model (error
    bars: readout seeds); the pixel floor, the oracle and the trivial predictor as horizontal
    lines; None without results.

    trivial: the task's baseline record (report.baseline_for), drawn as a dashed line.
    """
    g = df[df.task == task]
    if not ((g.status == "ok") & g.value.notna()).any():
        return None
    hib = bool(g[g.status == "ok"].higher_is_better.iloc[0])
    metric = g[g.status == "ok"].metric.iloc[0]
    split = reported_split(g)
    best = best_rows(g)
    models = [m for m in _models(g) if not g[g.model == m].family.isin(REFERENCE_FAMILIES).any()]
    g, x_t, t_label = _x_noise(g)
    one_depth = g[g.model.isin(models)].num_blocks.dropna().nunique() <= 1
    x_b = "block" if one_depth else "depth"
    fig, (ax_t, ax_b) = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    for ax in (ax_t, ax_b):  # first, so the failed-trial markers see the full y range
        _trivial_line(ax, trivial)
        _reference_lines(ax, best)
    _curve(ax_t, g, x_t, "block", models, best, split)
    _curve(ax_b, g, x_b, "t", models, best, split)
    ax_t.set_xlabel(t_label)
    ax_b.set_xlabel("block (0 = embedding output, L = last block)" if one_depth else
                    "depth (block / number of blocks)")
    if one_depth:
        ax_b.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    for ax, title in ((ax_t, "vs noise level (at each model's best block)"),
                      (ax_b, "vs depth (at each model's best t)")):
        ax.set_ylabel(f"{metric} on {split} ({_direction(hib)})")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{task}: where the features are best (Fig. 5; cells selected on val, "
                 f"{split} shown, error bars: readout seeds)")
    return _save(fig, path)


def heatmap(df: pd.DataFrame, task: str, model: str, path: Path, trivial=None) -> str | None:
    """Block (rows, 0 at the top) x timestep (columns) of one task and model on the selection
    split (mean over readout seeds); None if empty.

    trivial: the task's baseline record (report.baseline_for), stated in the title.
    """
    g = df[(df.task == task) & (df.model == model) & df.block.notna() & df.t.notna()]
    if g.empty:
        return None
    ok = g[(g.status == "ok") & g.value.notna()]
    blocks = sorted(int(b) for b in g.block.unique())
    ts = sorted(int(t) for t in g.t.unique())
    grid = np.full((len(blocks), len(ts)), np.nan)
    for (b, t), v in ok.groupby(["block", "t"]).value.mean().items():
        grid[blocks.index(int(b)), ts.index(int(t))] = v
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
    title = f"{task} - {model}\nblock x timestep on val, mean over seeds (best cell outlined, failed trials hatched)"
    if trivial is not None:
        best = (np.nanmax(grid) if hib else np.nanmin(grid)) if finite.size else float("nan")
        verdict = {"yes": "beaten by the best cell", "no": "NOT beaten by any cell",
                   "tie": "tied by the best cell", "n/a": "no cell to compare"}
        title += (f"\ntrivial predictor: {trivial['value']:.3g} "
                  f"({verdict[beats_trivial(best, trivial['value'], hib)]})")
    ax.set_title(title)
    return _save(fig, path)


def _reference_model(models: list[str], reference: str) -> str | None:
    """The model named `reference`: an exact label, else the first (in size order) that starts
    with it ('I-WALT' -> 'I-WALT small')."""
    if reference in models:
        return reference
    starts = [m for m in models if str(m).startswith(reference)]
    return starts[0] if starts else None


def fig7_relative(df: pd.DataFrame, path: Path,
                  reference: str = DEFAULT_REFERENCE) -> tuple[str | None, str | None]:
    """Each model's best value relative to the reference model (100 %) per task, whiskers = the
    seed spread; (path, reference model) or (None, why)."""
    best = best_rows(df)
    base = _reference_model(_models(best), reference)
    if base is None:
        return None, (f"no finished trial of the reference model '{reference}' (--reference; "
                      f"models: {', '.join(_models(best)) or 'none'})")
    tasks = sorted(best.task.unique())
    models = [m for m in _models(best) if m != base]
    fig, ax = plt.subplots(figsize=(max(7, 1.3 * len(tasks) + 3), 4.6), layout="constrained")
    ax.axhline(100, color="black", ls="--", lw=1, label=f"{base} reference (100 %)")
    n = len(models)
    for i, model in enumerate(models):
        xs, ys, errs = [], [], []
        for k, task in enumerate(tasks):
            g = best[best.task == task]
            b, m = g[g.model == base], g[g.model == model]
            if len(b) and len(m):
                xs.append(k + (i - (n - 1) / 2) * 0.8 / max(n, 1))
                ys.append(100 + relative_change(m.value.iloc[0], b.value.iloc[0],
                                                bool(g.higher_is_better.iloc[0])))
                errs.append(_relative_spread(b.iloc[0], m.iloc[0]))
        if xs:
            family = best[best.model == model].family.iloc[0]
            # WALT sizes grow the marker (the size table's order); other families keep one size.
            rank = model_sort_key(model)[0]
            ms = 6 + 2 * rank if family == "walt" and rank < len(SIZE_ORDER) else 7
            marker = "s" if family in FLOOR_FAMILIES else ("*" if family in CEILING_FAMILIES else "o")
            ax.errorbar(xs, ys, yerr=errs, fmt=marker, ms=ms, capsize=3,
                        color=_color(model, i), label=model)
    failed = df[~df.status.isin(["ok", "unreadable"])]
    for k, task in enumerate(tasks):
        if (failed.task == task).any():
            ax.annotate(f"{int((failed.task == task).sum())} failed", (k, 100), xytext=(0, -18),
                        textcoords="offset points", ha="center", color="red", fontsize=8)
    ax.set_xticks(range(len(tasks)), [_task_label(df, t) for t in tasks],
                  **_tick_style(len(tasks)))
    ax.set_ylabel(f"performance relative to {base} (%)\n(> 100: better; lower-is-better metrics inverted)")
    ax.set_title(f"Every model against {base} (Fig. 7)\ncell selected on val, reported on test where "
                 f"present\nwhiskers: readout-seed spread; square: pixel floor; star: oracle; "
                 f"larger marker: larger WALT", fontsize=10)
    ax.set_xlim(-0.6, len(tasks) - 0.4)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path), base


def draw_all(df: pd.DataFrame, out: Path, baselines=None,
             reference: str = DEFAULT_REFERENCE) -> tuple[dict, list[str]]:
    """Every plot the table supports, into `out`; returns ({name: path or None}, notes).

    baselines: None or {task: baseline record} (report.load_baselines).
    reference: the model Fig. 7 sets to 100 % (fig7_relative).
    """
    figures, notes = {}, []
    df = df[df.status != "unreadable"]
    if df.empty:
        return figures, ["no trials found"]
    figures["fig1_relative_change"] = fig1_relative_change(df, out / "fig1_relative_change.png")
    if figures["fig1_relative_change"] is None:
        notes.append("Fig. 1 needs finished image and video arms of one family (I-WALT and V-WALT of "
                     "one size, or a pair such as PixArt-alpha / Latte) on the same task")
    slug = "fig7_relative_to_iwalt" if reference == DEFAULT_REFERENCE else f"fig7_relative_to_{_slug(reference)}"
    path, why = fig7_relative(df, out / f"{slug}.png", reference)
    figures[slug] = path
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
