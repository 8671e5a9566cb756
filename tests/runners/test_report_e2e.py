"""`walt-probe report` end to end through the real CLI, checked by its numbers.

A handful of result files as the engine writes them: I-WALT / V-WALT small on a grid with two
readout seeds and val + test values (the best val cell is NOT the best test cell, so reporting
the wrong split or the wrong cell shows), the `pixels` floor, a PixArt-alpha / Latte pair of
different sizes on a shifted native noise axis, a schema-2 task with val only, and one
unreadable metrics.json. Every expected number below is computed by hand from these values.
"""

import json
import math

import pandas as pd
import pytest

from probing.result import ProbeResult
from runners import cli

# (block, t): (val per seed, test per seed)
IWALT = {(2, 0): ([0.50, 0.52], [0.60, 0.62]), (2, 200): ([0.40, 0.40], [0.41, 0.41]),
         (4, 0): ([0.60, 0.62], [0.50, 0.54]), (4, 200): ([0.45, 0.45], [0.45, 0.45])}
VWALT = {(2, 0): ([0.50, 0.50], [0.90, 0.90]), (2, 200): ([0.30, 0.30], [0.30, 0.30]),
         (4, 0): ([0.70, 0.72], [0.52, 0.56]), (4, 200): ([0.30, 0.30], [0.30, 0.30])}
SEED_STD = math.sqrt(2 * 0.02 ** 2)  # std (ddof 1) of two values 0.04 apart = 0.028284


def _write(root, name, *, value, test, backbone="walt", family="walt", variant="image",
           size="small", num_blocks=8, block=4, t=0, walt_t=None, seed=0, task="motion",
           metric="top1", hib=True, schema=3):
    d = root / "trials" / name
    d.mkdir(parents=True)
    split_metrics = {"val": {metric: value}, **({"test": {metric: test}} if test is not None else {})}
    noise = None if walt_t is None else {"native": float(t), "log_snr": 1.0 - walt_t / 100,
                                         "walt_t": float(walt_t)}
    r = ProbeResult(status="ok", error=None, task=task, metric=metric, higher_is_better=hib,
                    value=value, metrics={metric: value}, backbone=backbone, family=family,
                    variant=variant, size=size, fingerprint="fp", num_blocks=num_blocks, block=block,
                    block_spec=block, depth=block / num_blocks, t=t, noise=noise, split="val",
                    seed=seed, noise_seed=0, steps=3, final_loss=0.1, head_params=10,
                    feature_source="cache", backbone_batches=1, compile_head=None, wall_s=1.0,
                    extract_s=0.0, readout_s=1.0, code="c", output_dir=str(d), bindings=[],
                    split_metrics=split_metrics)
    data = json.loads(r.to_json())
    if schema == 2:  # as a result written before split_metrics existed
        del data["split_metrics"]
        data["schema_version"] = 2
    (d / "metrics.json").write_text(json.dumps(data))


@pytest.fixture
def study(tmp_path):
    exp = tmp_path / "study"
    for variant, grid in (("image", IWALT), ("video", VWALT)):
        for (block, t), (vals, tests) in grid.items():
            for seed, (v, te) in enumerate(zip(vals, tests)):
                _write(exp, f"{variant}-{block}-{t}-s{seed}", value=v, test=te, variant=variant,
                       block=block, t=t, walt_t=t, seed=seed)
    for seed, (v, te) in enumerate(((0.30, 0.35), (0.30, 0.37))):
        _write(exp, f"pixels-s{seed}", value=v, test=te, backbone="pixels", family="pixels",
               variant="video", size="rgb", num_blocks=1, block=0, t=0, seed=seed)
    # A public pair of different sizes on its own noise axis (native 100 = WALT t 137.5).
    _write(exp, "pixart", value=0.40, test=0.45, backbone="PixArt-alpha", family="pixart-latte",
           variant="image", size="0.6B", num_blocks=28, block=18, t=100, walt_t=137.5)
    _write(exp, "latte", value=0.50, test=0.48, backbone="Latte", family="pixart-latte",
           variant="video", size="0.7B", num_blocks=28, block=18, t=100, walt_t=137.5)
    # An encoder without noise (its result has no noise level): drawn at the clean end, WALT t 0.
    for block, v in ((6, 0.56), (12, 0.58)):
        _write(exp, f"dinov2-{block}", value=v, test=v - 0.1, backbone="DINOv2", family="dinov2",
               variant="image", size="86M", num_blocks=12, block=block, t=0)
    # A task whose results predate the test split (schema 2: val only).
    for block, v in ((2, 0.3), (4, 0.2)):
        for t in (0, 200):
            _write(exp, f"depth-{block}-{t}", value=v + t / 1000, test=None, task="depth",
                   metric="abs_rel", hib=False, block=block, t=t, walt_t=t, schema=2)
    broken = exp / "trials" / "broken"
    broken.mkdir(parents=True)
    (broken / "metrics.json").write_text('{"status": "ok", "value": 0.')  # truncated mid-write
    return exp


def test_report_selects_on_val_reports_test_and_lists_the_unreadable_file(study, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main(["report", str(study), "--out", str(out)]) == 0
    assert "1 unreadable" in capsys.readouterr().out
    df = pd.read_csv(out / "results.csv")
    assert len(df) == 16 + 2 + 2 + 2 + 4 + 1 and (df.status == "unreadable").sum() == 1
    row = df[df.trial == "image-4-0-s1"].iloc[0]
    assert (row.value, row.test_value, row.split) == (0.62, 0.54, "val")
    assert df[df.task == "depth"].test_value.isna().all()

    summary = (out / "summary.md").read_text()
    # I-WALT: (4, 0) wins on val (mean 0.61); its test mean 0.52 is reported, not the best test
    # cell (2, 0) = 0.61; the spread is the two seeds' std.
    assert (f"| motion | I-WALT small | 4 | 0 | 0 | 0.61 | 0.52 ± {SEED_STD:.2g} (2 seeds) test | gain |"
            in summary)
    assert (f"| motion | V-WALT small | 4 | 0 | 0 | 0.71 | 0.54 ± {SEED_STD:.2g} (2 seeds) test | gain |"
            in summary)
    assert f"| motion | pixels | 0 | 0 | - | 0.3 | 0.36 ± {math.sqrt(2e-4):.2g} (2 seeds) test | - |" in summary
    assert "- motion: selected on val, reported on test" in summary
    assert "- depth: selected on val, reported on **val** (fallback" in summary
    assert "- depth: no `pixels` result" in summary
    # V vs I differ by 0.02 < the seed spread 0.028: level, never a gain.
    assert (f"| motion | small | 0.52 ± {SEED_STD:.2g} (2 seeds) | 0.54 ± {SEED_STD:.2g} (2 seeds) | "
            f"+3.8% | level |") in summary
    # The public pair pairs by family although the arms' sizes differ; one seed: spread unknown.
    assert ("| motion | Latte vs PixArt-alpha | 0.45 (1 seed) | 0.48 (1 seed) | +6.7% | "
            "gain (1 seed, spread unknown) |") in summary
    unreadable = summary.split("## Unreadable result files")[1].split("\n## ")[0]
    assert f"`{study / 'trials' / 'broken' / 'metrics.json'}`" in unreadable and "not JSON" in unreadable

    # Fig. 5: the shared noise axis (PixArt's native 100 is drawn at WALT t 137.5), test values
    # with the seed std as error bars, the pixel floor as a line at its test mean.
    fig5 = pd.read_csv(out / "fig5_motion.csv")
    noise = fig5[fig5.panel == 0]
    i_line = noise[noise.label == "I-WALT small (block = 4)"].sort_values("x")
    assert list(i_line.x) == [0.0, 200.0] and list(i_line.y) == pytest.approx([0.52, 0.45])
    assert list(i_line.err) == pytest.approx([SEED_STD, 0.0], abs=1e-12)
    assert list(noise[noise.label.str.startswith("PixArt-alpha")].x) == [137.5]
    assert list(noise[noise.label == "DINOv2 (block = 12)"].x) == [0.0]
    floor = noise[noise.label.str.startswith("pixel floor")]
    assert len(floor) and list(floor.y) == pytest.approx([0.36] * len(floor))
    # Fig. 1: one bar per pair and task, whiskers = the larger arm's spread over |image arm|.
    fig1 = pd.read_csv(out / "fig1_relative_change.csv")
    walt = fig1[(fig1.kind == "bar") & (fig1.label == "small")]
    assert list(walt.y) == pytest.approx([(0.54 - 0.52) / 0.52 * 100])
    whisker = fig1[(fig1.kind == "errorbar") & (fig1.label == "small: seed spread")]
    assert list(whisker.err) == pytest.approx([100 * SEED_STD / 0.52])
    latte = fig1[(fig1.kind == "bar") & (fig1.label == "Latte vs PixArt-alpha")]
    assert list(latte.y) == pytest.approx([(0.48 - 0.45) / 0.45 * 100])
    # Fig. 7 against the default reference I-WALT (its first size).
    fig7 = pd.read_csv(out / "fig7_relative_to_iwalt.csv").query("kind == 'errorbar'")
    by = fig7[fig7.tick.str.startswith("motion")].set_index("label").y
    assert by["V-WALT small"] == pytest.approx(100 + (0.54 - 0.52) / 0.52 * 100)
    assert by["pixels"] == pytest.approx(100 + (0.36 - 0.52) / 0.52 * 100)


def test_fig7_takes_the_reference_the_user_names(study, tmp_path):
    out = tmp_path / "out"
    assert cli.main(["report", str(study), "--out", str(out), "--reference", "PixArt-alpha"]) == 0
    fig7 = pd.read_csv(out / "fig7_relative_to_PixArt-alpha.csv").query("kind == 'errorbar'")
    assert fig7.set_index("label").y["Latte"] == pytest.approx(100 + (0.48 - 0.45) / 0.45 * 100)
    assert "| motion | I-WALT small |" in (out / "summary.md").read_text()
    assert cli.main(["report", str(study), "--out", str(tmp_path / "o2"), "--reference", "SigLIP"]) == 0
    assert "Fig. 7 not drawn: no finished trial of the reference model 'SigLIP'" in \
        (tmp_path / "o2" / "summary.md").read_text()
