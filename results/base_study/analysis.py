"""The base study's analysis stage: CSVs, Tables 1-2, plots and tables.md from the probe results.

Called by study.py (stage `analyze`); rerun alone with
  python results/base_study/study.py --root ROOT --only analyze
Reads ROOT/probes/*/result.json, ROOT/data/trivial.json, the pretraining runs' run.json /
evals.json; writes ROOT/results/ (what results/base_study/ commits).

Conventions: every reported number is on the test split; cells were selected on val. A seed
mean is the mean over readout seeds; "spread" is max - min over those seeds (|s0 - s1| for two).
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import shutil
from pathlib import Path

import numpy as np

import study as S


def _write_csv(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not rows:
        path.write_text("")
        return
    keys = list(dict.fromkeys(k for r in rows for k in r))
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    tmp.replace(path)


def _row(res: dict) -> dict:
    j = res["job"]
    return {"model": j["model"], "ckpt": j["ckpt"], "task": j["task"], "block": j["block"], "t": j["t"],
            "seed": j["seed"], "recipe": j.get("recipe", ""), "status": res.get("status"), "metric": res.get("metric"),
            "higher_is_better": res.get("higher_is_better"), "val": S.value(res, "val"),
            "test": S.value(res, "test"), "final_loss": res.get("final_loss"),
            "readout_s": res.get("readout_s"), "wall_s": res.get("wall_s"),
            "error": (res.get("error") or "")[:200], "source": res.get("source", "")}


def control_sources(st) -> list[str]:
    """The runs named by `controls_from`, in priority order (one string in older runs' settings)."""
    sources = st.s.get("controls_from") or []
    return [sources] if isinstance(sources, str) else list(sources)


def borrowed_controls(st, have: list[dict]) -> list[dict]:
    """Control results of the runs named by `controls_from` (their probes/) for the control
    probes this run lacks: per probe the first run with an ok result (else the first with any),
    marked with that run as its `source`."""
    sources = control_sources(st)
    have_ids = {r["job"]["id"] for r in have}
    rows = []
    for j in S.controls_jobs(st, every=True):
        found = [(src, json.loads(path.read_text())) for src in sources
                 if j["id"] not in have_ids and (path := Path(src) / "probes" / j["id"] / "result.json").is_file()]
        if found:
            src, res = next((f for f in found if f[1].get("status") == "ok"), found[0])
            rows.append({**res, "source": src})
    return rows


def borrowed_trivial(st, trivial: dict) -> dict[str, str]:
    """Adds to `trivial` (data/trivial.json's form) the analogs this run did not render, from
    the first `controls_from` run whose results/trivial.csv has them (same seeds and sizes:
    the same clips); returns {analog: that run}."""
    taken = {}
    for src in control_sources(st):
        path = Path(src) / "results" / "trivial.csv"
        if not path.is_file():
            continue
        with open(path) as fh:
            for row in csv.DictReader(fh):
                if row["task"] in trivial or not row.get("test"):
                    continue
                trivial[row["task"]] = {split: {"metric": row["metric"], "value": float(row[split]),
                                                "predictor": row["predictor"]} for split in ("val", "test")}
                trivial[row["task"]]["sizes"] = {s: int(row[f"n_{s}"]) for s in ("train", "val", "test")
                                                 if row.get(f"n_{s}")}
                taken[row["task"]] = src
    return taken


def borrowed_probes(st, have: list[dict], jobs: list[dict]) -> list[dict]:
    """Results of the run named by `probes_from` (its probes/) for the WALT probes among `jobs`
    this run lacks, where that probe read the same bytes: the tokenizer's and the probed WALT
    checkpoint's sha256 are equal in both runs' digest lists. Each is marked with that run as
    its `source`; a probe whose checkpoint differs (or is unlisted) is not borrowed."""
    src = st.s.get("probes_from")
    if not src:
        return []
    mine, theirs = S.checkpoint_digests_of(st.root), S.checkpoint_digests_of(Path(src))
    tokenizer = "tokenizer/export/tokenizer.safetensors"
    if not mine.get(tokenizer) or mine.get(tokenizer) != theirs.get(tokenizer):
        return []
    have_ids = {r["job"]["id"] for r in have}
    rows = []
    for j in jobs:
        ckpt = st.walt_path(j["model"], j["ckpt"]).relative_to(st.root).as_posix()
        path = Path(src) / "probes" / j["id"] / "result.json"
        if (j["id"] not in have_ids and path.is_file() and mine.get(ckpt)
                and mine.get(ckpt) == theirs.get(ckpt)):
            rows.append({**json.loads(path.read_text()), "source": src})
    return rows


def _with_borrowed(st, jobs: list[dict]) -> list[dict]:
    own = S.load_results(st, jobs)
    return own + borrowed_probes(st, own, jobs)


def _seed_stats(rows: list[dict], keys: tuple) -> list[dict]:
    """Seed means and spreads of `test` (and `val`) grouped by `keys`."""
    groups: dict = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in keys), []).append(r)
    out = []
    for key, rs in groups.items():
        tv = [r["test"] for r in rs if r["test"] is not None]
        vv = [r["val"] for r in rs if r["val"] is not None]
        out.append({**dict(zip(keys, key)), "metric": rs[0]["metric"], "n_seeds": len(tv),
                    "test_mean": float(np.mean(tv)) if tv else None,
                    "test_spread": float(np.max(tv) - np.min(tv)) if len(tv) > 1 else None,
                    "val_mean": float(np.mean(vv)) if vv else None,
                    "higher_is_better": rs[0]["higher_is_better"],
                    # the earlier runs some of these seeds come from ('' if all are this run's)
                    "source": ", ".join(sorted({r.get("source") or "" for r in rs} - {""}))})
    return out


def _fmt(x, nd=3):
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def pretraining_summary(st) -> tuple[list[dict], dict]:
    """One row per pretraining run (throughput, MFU, held-out numbers) and the val losses per tag."""
    peak = None
    p = st.root / "peak.json"
    if p.is_file():
        peak = json.loads(p.read_text())["bf16_tflops"]
    rows, losses = [], {}
    for stage in ("tokenizer", "iwalt", "vwalt"):
        run = st.root / stage / "run.json"
        if not run.is_file():
            continue
        rec = json.loads(run.read_text())
        sps = rec["throughput"]["steps_per_s"]
        flops = rec.get("model_flops_per_step")
        last = rec["evals"][-1] if rec["evals"] else {}
        rows.append({"run": stage, "parameters": rec.get("parameters"), "steps": rec["step"],
                     "batch": rec.get("clips_per_step"), "steps_per_s": sps,
                     "clips_per_s": sps * rec.get("clips_per_step", 0),
                     "model_tflop_per_step": flops / 1e12 if flops else None,
                     "mfu": flops * sps / (peak * 1e12) if (flops and peak) else None,
                     "final_loss": rec.get("final_loss_mean_last_100"),
                     "val_psnr": last.get("val_psnr"), "val_mse_clips": last.get("val_mse_clips"),
                     "val_mse_images": last.get("val_mse_images"),
                     "wall_s": rec.get("wall_seconds_this_invocation"), "device": rec.get("device"),
                     # held-out PSNR at each evaluated step (the tokenizer's curve: how far 28 dB is)
                     "val_psnr_by_step": {e["step"]: round(e["val_psnr"], 3) for e in rec["evals"]
                                          if e.get("val_psnr") is not None} or None})
        if stage != "tokenizer":
            model = "I-WALT" if stage == "iwalt" else "V-WALT"
            for e in rec["evals"]:
                if e.get("tag"):
                    losses[(model, e["tag"])] = e
        for name in ("loss_curve.png",):
            if (st.root / stage / name).is_file():
                shutil.copy(st.root / stage / name, st.root / "results" / f"{stage}_{name}")
        samples = sorted((st.root / stage / "samples").glob("*.png"))
        if samples:
            shutil.copy(samples[-1], st.root / "results" / f"{stage}_{samples[-1].name}")
    return rows, losses


def checkpoint_digests(st) -> list[dict]:
    """The exported checkpoints' sha256: hashed where they are (the GPU machine), else read from
    the digest list the run brought back (an analysis away from the checkpoints)."""
    out = []
    for stage in ("tokenizer", "iwalt", "vwalt"):
        for f in sorted((st.root / stage / "export").glob("*.safetensors")):
            h = hashlib.sha256(f.read_bytes()).hexdigest()
            out.append({"file": f"{stage}/export/{f.name}", "bytes": f.stat().st_size, "sha256": h})
    if not out:
        out = [{"file": name, "bytes": None, "sha256": digest}
               for name, digest in sorted(S.checkpoint_digests_of(st.root).items())
               if name.split("/")[0] in ("tokenizer", "iwalt", "vwalt")]
    return out


def spearman_exact_p(x, y) -> float:
    """Two-sided p of Spearman's rho by exact permutation (all n! pairings; n <= 8 here, at most
    40,320): at six points the t approximation scipy's spearmanr uses reports p = 0 for a
    perfect rank order, whose exact p is 2 / 720 = 0.0028."""
    from scipy import stats
    if len(x) > 8:
        return float(stats.spearmanr(x, y).pvalue)
    res = stats.permutation_test((np.asarray(x),), lambda a: stats.spearmanr(a, y).statistic,
                                 permutation_type="pairings", n_resamples=np.inf, alternative="two-sided")
    return float(res.pvalue)


def correlations(budget_stats: list[dict], losses: dict) -> list[dict]:
    """Tables 1-2: Pearson and Spearman of the seed-mean test metric vs the pretraining
    validation loss (the model's own objective: clips for V-WALT, image stacks for I-WALT, and
    both listed) and vs the budget fraction, per task and model, with p-values (scipy):
    Pearson's from the t distribution, Spearman's exact (`spearman_exact_p`)."""
    from scipy import stats
    out = []
    for model in S.MODELS:
        for task in S.BUDGET_TASKS:
            pts = []
            for tag in S.BUDGET_TAGS:
                ckpt = "final" if tag == "p100" else tag
                r = next((b for b in budget_stats if b["model"] == model and b["task"] == task
                          and b["ckpt"] == ckpt), None)
                e = losses.get((model, tag))
                if r is None or r["test_mean"] is None or e is None:
                    continue
                own = e["val_mse_clips"] if model == "V-WALT" else e["val_mse_images"]
                pts.append((int(tag[1:]) / 100, own, r["test_mean"]))
            row = {"model": model, "task": task, "n_points": len(pts)}
            if len(pts) >= 3:
                frac, loss, metric = (np.array(x) for x in zip(*pts))
                for name, x in (("val_loss", loss), ("budget", frac)):
                    pr, pp = stats.pearsonr(x, metric)
                    sr, sp = stats.spearmanr(x, metric).statistic, spearman_exact_p(x, metric)
                    row.update({f"pearson_{name}": float(pr), f"pearson_{name}_p": float(pp),
                                f"spearman_{name}": float(sr), f"spearman_{name}_p": float(sp)})
            out.append(row)
    return out


def plots(st, grid_rows, budget_stats, losses, trivial) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    res = st.root / "results"
    blocks, ts = st.s["grid_blocks"], st.s["grid_t"]
    for task in S.GRID_TASKS:
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
        for ax, model in zip(axes, S.MODELS):
            m = np.full((len(ts), len(blocks)), np.nan)
            for r in grid_rows:
                if r["model"] == model and r["task"] == task and r["val"] is not None:
                    m[ts.index(r["t"]), blocks.index(r["block"])] = r["val"]
            im = ax.imshow(m, aspect="auto", cmap="viridis")
            ax.set_xticks(range(len(blocks)), blocks)
            ax.set_yticks(range(len(ts)), ts)
            ax.set_xlabel("block")
            ax.set_ylabel("t")
            ax.set_title(f"{model} {task} (val)")
            for (i, k), v in np.ndenumerate(m):
                if not np.isnan(v):
                    ax.text(k, i, f"{v:.2f}", ha="center", va="center", fontsize=6, color="w")
            fig.colorbar(im, ax=ax)
        fig.tight_layout()
        fig.savefig(res / f"heatmap_{task}.png", dpi=110)
        plt.close(fig)
    fig, axes = plt.subplots(1, len(S.BUDGET_TASKS), figsize=(4 * len(S.BUDGET_TASKS), 3.4))
    for ax, task in zip(np.atleast_1d(axes), S.BUDGET_TASKS):
        for model, colour in zip(S.MODELS, ("tab:blue", "tab:orange")):
            xs, ys, es = [], [], []
            for tag in S.BUDGET_TAGS:
                ckpt = "final" if tag == "p100" else tag
                r = next((b for b in budget_stats if b["model"] == model and b["task"] == task
                          and b["ckpt"] == ckpt), None)
                if r and r["test_mean"] is not None:
                    xs.append(int(tag[1:]))
                    ys.append(r["test_mean"])
                    es.append((r["test_spread"] or 0) / 2)
            if xs:
                ax.errorbar(xs, ys, yerr=es, marker="o", label=model, color=colour, capsize=3)
        if task in trivial:
            ax.axhline(trivial[task]["test"]["value"], ls="--", color="grey", label="trivial")
        ax.set_xscale("log")
        ax.set_xlabel("% of pretraining")
        ax.set_title(task)
        ax.legend(fontsize=7)
    fig.suptitle("Training-budget study (test; error bar = half the seed spread)")
    fig.tight_layout()
    fig.savefig(res / "budget.png", dpi=110)
    plt.close(fig)


def write_all(st) -> None:
    res = st.root / "results"
    res.mkdir(exist_ok=True)
    trivial_path = st.root / "data" / "trivial.json"
    trivial = json.loads(trivial_path.read_text()) if trivial_path.is_file() else {}
    trivial_from = borrowed_trivial(st, trivial)
    cells_path = res / "selected_cells.json"
    cells = json.loads(cells_path.read_text()) if cells_path.is_file() else S.select_cells(st)

    grid_rows = [_row(r) for r in S.load_results(st, S.grid_jobs(st))]
    cell_rows = [_row(r) for r in _with_borrowed(st, S.cells_jobs(st, cells))]
    budget_rows = [_row(r) for r in _with_borrowed(st, S.budget_jobs(st, cells))]
    own_controls = S.load_results(st, S.controls_jobs(st))
    control_rows = [_row(r) for r in own_controls + borrowed_controls(st, own_controls)]
    cell_stats = _seed_stats(cell_rows + control_rows, ("model", "task", "block", "t", "recipe"))
    budget_stats = _seed_stats(budget_rows, ("model", "task", "ckpt", "block", "t"))
    pre_rows, losses = pretraining_summary(st)
    corr = correlations(budget_stats, losses)
    digests = checkpoint_digests(st)
    for name, rows in (("grid", grid_rows), ("cells", cell_rows), ("budget", budget_rows),
                       ("controls", control_rows), ("cells_seed_stats", cell_stats),
                       ("budget_seed_stats", budget_stats), ("pretraining", pre_rows),
                       ("tables_1_2", corr), ("checkpoints_sha256", digests),
                       ("trivial", [{"task": k, "metric": v["val"]["metric"], "val": v["val"]["value"],
                                     "test": v["test"]["value"], "predictor": v["val"]["predictor"],
                                     **{f"n_{s}": n for s, n in v["sizes"].items()},
                                     "source": trivial_from.get(k, "")}
                                    for k, v in trivial.items()])):
        _write_csv(res / f"{name}.csv", rows)
    val_losses = [{"model": m, "tag": t, **{k: v for k, v in e.items() if k.startswith("val_mse") or k == "step"}}
                  for (m, t), e in sorted(losses.items())]
    _write_csv(res / "pretraining_val_loss.csv", val_losses)
    try:
        plots(st, grid_rows, budget_stats, losses, trivial)
    except Exception as err:  # a plot must not lose the tables
        st.log(f"analyze: plots failed: {type(err).__name__}: {err}")
    failed = [r for r in grid_rows + cell_rows + budget_rows + control_rows if r["status"] != "ok"]

    # tables.md: the numbers the summary cites.
    lines = ["# Base study tables (generated by results/base_study/analysis.py)", "",
             "All numbers on test; cells selected on val (seed 0 grid). Spread = max - min over "
             "readout seeds.", ""]
    lines += ["## Pretraining", "", "| run | params | steps | batch | steps/s | clips/s | TFLOP/step | MFU | "
              "final loss | held-out |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in pre_rows:
        held = (f"PSNR {r['val_psnr']:.2f} dB" if r["val_psnr"] is not None else
                f"v-MSE clips {_fmt(r['val_mse_clips'], 4)} / images {_fmt(r['val_mse_images'], 4)}")
        if r["val_psnr"] is not None and len(r["val_psnr_by_step"] or {}) > 1:
            held += " (by step: " + ", ".join(f"{k}: {v:.2f}" for k, v in r["val_psnr_by_step"].items()) + ")"
        mfu = "-" if r["mfu"] is None else f"{100 * r['mfu']:.1f} %"
        lines.append(f"| {r['run']} | {r['parameters']:,} | {r['steps']} | {r['batch']} | {r['steps_per_s']:.2f} | "
                     f"{r['clips_per_s']:.0f} | {_fmt(r['model_tflop_per_step'])} | "
                     f"{mfu} | {_fmt(r['final_loss'], 4)} | {held} |")
    source = res / "cells_source.json"
    origin = (f" of the grid of an earlier run: {json.loads(source.read_text())['cells_from']}"
              if source.is_file() else "")
    lines += ["", f"## Selected cells (best val, seed 0{origin})", "", "```", json.dumps(cells), "```", ""]
    lines += ["## All ten analogs (test, seed mean and spread), with controls and trivial", "",
              "| analog | metric | I-WALT | V-WALT | V vs I | pixels | oracle | trivial |", "|---|---|---|---|---|---|---|---|"]
    for task in S.ANALOGS:
        def cell(model, recipe=""):
            r = next((c for c in cell_stats if c["model"] == model and c["task"] == task
                      and c["recipe"] == recipe), None)
            if r is None or r["test_mean"] is None:
                return "-", None
            mark = ("‡" if model in S.MODELS else "†") if r["source"] else ""
            cellname = (f" (b{r['block']} t{r['t']})" if model in S.MODELS else "") + (f" {mark}" if mark else "")
            return f"{r['test_mean']:.3f} ± {_fmt(r['test_spread'])}{cellname}", r["test_mean"]
        (i_s, i_v), (v_s, v_v) = cell("I-WALT"), cell("V-WALT")
        rel = "-"
        if i_v not in (None, 0) and v_v is not None:
            hib = next((c["higher_is_better"] for c in cell_stats if c["task"] == task), True)
            rel = f"{100 * ((v_v - i_v) if hib else (i_v - v_v)) / abs(i_v):+.0f} %"
        triv = trivial.get(task, {}).get("test", {}).get("value")
        metric = trivial.get(task, {}).get("test", {}).get("metric", "")
        triv_s = _fmt(triv) + (" †" if task in trivial_from else "")
        lines.append(f"| {task} | {metric} | {i_s} | {v_s} | {rel} | {cell('pixels')[0]} | {cell('oracle')[0]} | {triv_s} |")
        for recipe, tasks in S.RECIPE_TASKS.items():
            if task in tasks and any(c["recipe"] == recipe and c["task"] == task for c in cell_stats):
                lines.append(f"| {task}, recipe '{recipe}' | {metric} | {cell('I-WALT', recipe)[0]} | "
                             f"{cell('V-WALT', recipe)[0]} | - | {cell('pixels', recipe)[0]} | "
                             f"{cell('oracle', recipe)[0]} | {triv_s} |")
    if any(r["source"] for r in control_rows) or trivial_from:
        named = ", ".join(sorted({r["source"] for r in control_rows if r["source"]} | set(trivial_from.values())))
        lines += ["", f"† measured by an earlier run ({named}, its probes/; the same "
                  "analogs' seeds and sizes, the same readout settings), where this run has no such probe."]
    borrowed = sorted({r["source"] for r in cell_rows + budget_rows if r["source"]})
    if borrowed:
        lines += ["", f"‡ some or all seeds measured by an earlier run ({', '.join(borrowed)}, its probes/) "
                  "on a byte-identical backbone: the tokenizer's and that WALT checkpoint's sha256 "
                  "are equal in both runs' checkpoints_sha256_device.txt; this run has no such probe."]
    recipes = {r: st.s.get("recipes", {}).get(r) for r in S.RECIPE_TASKS}
    lines += ["", f"Readout recipes beside the study's (same cells, same features): {json.dumps(recipes)}."]
    lines += ["", "## Training budget (test, seed mean ± spread)", "",
              "| model | task | " + " | ".join(S.BUDGET_TAGS) + " |", "|---|---|" + "---|" * len(S.BUDGET_TAGS)]
    for model in S.MODELS:
        for task in S.BUDGET_TASKS:
            vals = []
            for tag in S.BUDGET_TAGS:
                ckpt = "final" if tag == "p100" else tag
                r = next((b for b in budget_stats if b["model"] == model and b["task"] == task and b["ckpt"] == ckpt), None)
                vals.append("-" if r is None or r["test_mean"] is None else
                            f"{r['test_mean']:.3f} ± {_fmt(r['test_spread'])}" + (" ‡" if r["source"] else ""))
            lines.append(f"| {model} | {task} | " + " | ".join(vals) + " |")
    lines += ["", "## Tables 1-2: correlation of the probe metric with the validation loss and the budget", "",
              "Seed-0 test metric per checkpoint; p two-sided: Pearson's from the t distribution, "
              "Spearman's by exact permutation (n! pairings).", "",
              "| model | task | n | Pearson r (p) vs val loss | Spearman rho (p) vs val loss | Pearson r (p) vs budget | Spearman rho (p) vs budget |",
              "|---|---|---|---|---|---|---|"]
    for r in corr:
        def rp(k):
            return "-" if k not in r else f"{r[k]:+.2f} ({r[k + '_p']:.3f})"
        lines.append(f"| {r['model']} | {r['task']} | {r['n_points']} | {rp('pearson_val_loss')} | "
                     f"{rp('spearman_val_loss')} | {rp('pearson_budget')} | {rp('spearman_budget')} |")
    lines += ["", f"## Probes not ok: {len(failed)}", ""]
    lines += [f"- {r['model']} {r['ckpt']} {r['task']} b{r['block']} t{r['t']} s{r['seed']}: {r['status']} {r['error']}"
              for r in failed[:40]]
    (res / "tables.md").write_text("\n".join(lines) + "\n")
    st.log(f"analyze: {len(grid_rows)} grid, {len(cell_rows)} cell, {len(budget_rows)} budget, "
           f"{len(control_rows)} control probes; {len(failed)} not ok -> {res}")
