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
import os
import subprocess
import sys
import tarfile
import time
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
    # Through the lent-machine wrapper (device_session.sh: detached, polled, packed), which runs
    # study.py itself: a broken wrapper once cost a GPU session its first call.
    session = [*DEVICE_SESSION, "start", str(root), "--tiny", "--only", "data", "grid", "analyze",
               "--grid_blocks", "2", "--grid_t", "0", "--workers", "1"]
    env = {**os.environ, "BITWISE": "0", "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run(session, cwd=REPO, check=True, env=env, timeout=60)
    deadline = time.time() + 900
    while "session end" not in _read(root / "session.log") and time.time() < deadline:
        time.sleep(2)
    log = _read(root / "session.log")
    assert "study exit 0" in log and "session end" in log, log + _read(root / "run.log")[-3000:]
    return root


DEVICE_SESSION = ["bash", "results/base_study/device_session.sh"]


def _read(path: Path) -> str:
    return path.read_text() if path.is_file() else ""


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


def test_the_pack_brings_back_results_and_digests_not_checkpoints(study_root, tmp_path):
    subprocess.run([*DEVICE_SESSION, "pack", str(study_root), str(tmp_path)], cwd=REPO, check=True,
                   capture_output=True, timeout=120)
    with tarfile.open(tmp_path / "study_run.tgz") as tar:
        names = tar.getnames()
    assert "./results/tables.md" in names and "./session.log" in names
    assert sum(n.endswith("/result.json") for n in names) == 8
    assert not [n for n in names if n.endswith(".safetensors") or n.startswith("./code")]
    digests = (study_root / "checkpoints_sha256_device.txt").read_text().splitlines()
    exports = sorted(study_root.glob("*/export/*.safetensors"))
    assert len(digests) == len(exports) == 3 and all(len(d.split()[0]) == 64 for d in digests)
    # The run's copy of the tree is the sources, not the environment beside them.
    code = study_root / "code"
    assert (code / "results" / "base_study" / "study.py").is_file() and not (code / ".venv").exists()


def test_the_controls_run_beside_the_pretraining_in_the_data_process(tmp_path):
    """--early_controls: the background process renders the analogs, then probes the pixel floor
    and the oracle (with the 'geo' recipe on depth and pose) while the main process would
    pretrain; the main process waits for it before the analysis."""
    root = tmp_path / "ec"
    cmd = [sys.executable, "results/base_study/study.py", "--root", str(root), "--tiny",
           "--only", "data", "controls", "analyze", "--early_controls", "2"]
    subprocess.run(cmd, cwd=REPO, check=True, capture_output=True, timeout=600,
                   env={**os.environ, "PYTHONPATH": str(REPO)})
    assert "data + controls: in the background" in _read(root / "study.log")
    assert "controls: done" in _read(root / "data.log")
    results = [json.loads(p.read_text()) for p in (root / "probes").glob("*/result.json")]
    assert len(results) == 2 * 10 * 2 + 2 * 2 * 2   # pixels + oracle x ten analogs x two seeds, + geo
    assert all(r["status"] == "ok" for r in results), [r["job"]["id"] for r in results if r["status"] != "ok"]
    tables = (root / "results" / "tables.md").read_text()
    assert "| depth, recipe 'geo' |" in tables and "Probes not ok: 0" in tables
