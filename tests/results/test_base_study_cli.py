"""The base study's probe stages end to end through results/base_study/study.py (tiny scale).

The GPU run is too costly to discover a broken binding on, so this runs the real script on
seeded random tiny checkpoints: the data stage renders all ten analogs and scores their
trivial predictors, the grid probes every (model, grid analog) at one cell, and the analysis
writes its tables. Every probe must come back ok with finite val and test numbers.
(The tiny probe bindings once lacked the backbone size: every grid probe failed, and only an
end-to-end run could see it.)
"""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from backbones.build import build_backbone
from walt.checkpoint import save_module

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def study_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("base_study")
    for run, variant in (("iwalt", "image"), ("vwalt", "video")):
        bb = build_backbone(size="tiny", variant=variant, tokenizer="tiny", image_size=32,
                            num_frames=9, device="cpu", seed=0)
        save_module(bb.walt, root / run / "export" / f"walt_tiny_{variant}.safetensors")
    save_module(bb.tokenizer, root / "tokenizer" / "export" / "tokenizer.safetensors")
    cmd = [sys.executable, "results/base_study/study.py", "--root", str(root), "--tiny",
           "--only", "data", "grid", "analyze", "--grid_blocks", "2", "--grid_t", "0", "--workers", "1"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return root


def test_every_grid_probe_is_ok_with_finite_val_and_test(study_root):
    results = [json.loads(p.read_text()) for p in (study_root / "probes").glob("*/result.json")]
    assert len(results) == 2 * 4  # two models x four grid analogs x one cell x seed 0
    for r in results:
        assert r["status"] == "ok", (r["job"]["id"], r.get("error"))
        for split in ("val", "test"):
            assert math.isfinite(r[split][r["metric"]]), (r["job"]["id"], split)


def test_cells_are_selected_for_every_grid_analog_and_the_tables_written(study_root):
    cells = json.loads((study_root / "results" / "selected_cells.json").read_text())
    assert {m: sorted(c) for m, c in cells.items()} == {
        m: sorted(["objects", "motion", "depth", "point_tracks"]) for m in ("I-WALT", "V-WALT")}
    assert all(cell == [2, 0] for c in cells.values() for cell in c.values())
    trivial = json.loads((study_root / "data" / "trivial.json").read_text())
    assert len(trivial) == 10 and all(set(v) >= {"val", "test", "sizes"} for v in trivial.values())
    tables = (study_root / "results" / "tables.md").read_text()
    assert "Probes not ok: 0" in tables
