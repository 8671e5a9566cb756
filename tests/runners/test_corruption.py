"""Damaged bytes never become a number: a checkpoint, a feature-cache shard (tests/probing/
test_cache.py), a metrics.json and a pretraining state, each zeroed, truncated or with a garbled
header, end in a named error (which file, how to recover) or a stated recovery. Also: files
honour the umask, and a trial that fails keeps its own labels."""

import json
import os
import stat
import sys
from pathlib import Path

import pytest
import torch

from pretraining.loop import Dist, LoopConfig, Trainer, checkpoints_newest_first, digest_path, load_state
from probing.result import ProbeResult, ResultError
from walt.checkpoint import load_walt, save_module, write_text_atomic
from walt.transformer import WALT
from walt_probe.errors import CheckpointError, IntegrityError

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from corruption import MODES, corrupt  # noqa: E402


@pytest.mark.parametrize("how", MODES)
def test_a_corrupt_checkpoint_is_refused_naming_it(tmp_path, how):
    path = save_module(WALT.from_size("tiny", latent_shape=(2, 4, 4)), tmp_path / f"w_{how}.safetensors")
    corrupt(path, how)
    with pytest.raises(IntegrityError) as err:
        load_walt(path)
    assert str(path) in str(err.value) and "re-train" in str(err.value)


def test_nan_weights_without_a_digest_are_refused_not_blamed_on_the_readout(tmp_path):
    model = WALT.from_size("tiny", latent_shape=(2, 4, 4))
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    path = save_module(model, tmp_path / "nan.safetensors")  # its digest is right: the bytes are NaN
    with pytest.raises(CheckpointError, match="NaN or inf"):
        load_walt(path)


def _trainer(run_dir, steps=3):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    x, y = torch.randn(8, 3), torch.randn(8, 1)
    cfg = LoopConfig(steps=steps, lr=1e-2, warmup=0, checkpoint_every=1, fractions=(1.0,), log_every=1,
                     ema_decay=0.0, precision="fp32")
    loss_fn = lambda step, m: (torch.nn.functional.mse_loss(m(x), y), {})  # noqa: E731
    return Trainer(model, cfg, run_dir, Dist(), {"stage": "test"}, loss_fn, log=lambda msg: None)


@pytest.mark.parametrize("how", MODES)
def test_resume_skips_a_corrupt_latest_state_and_takes_the_newest_intact(tmp_path, how):
    t = _trainer(tmp_path)
    t.cfg.fractions, t.fraction_steps = (0.34, 1.0), {1: "p034", 3: "p100"}
    t.train(stop_after=2)  # states at step 1 (named fraction, kept) and step 2 (newest)
    assert [p.name for p in checkpoints_newest_first(tmp_path)] == ["step_0000002.pt", "step_0000001.pt"]
    assert digest_path(tmp_path / "checkpoints" / "step_0000002.pt").is_file()
    corrupt(tmp_path / "checkpoints" / "step_0000002.pt", how)
    with pytest.raises(IntegrityError, match="step_0000002.pt"):
        load_state(tmp_path / "checkpoints" / "step_0000002.pt", "cpu")
    again = _trainer(tmp_path)
    with pytest.warns(UserWarning, match="skips .*step_0000002.pt"):
        assert again.resume_latest().name == "step_0000001.pt"
    assert again.step == 1
    corrupt(tmp_path / "checkpoints" / "step_0000001.pt", how)
    with pytest.raises(CheckpointError, match="no intact checkpoint"), pytest.warns(UserWarning):
        _trainer(tmp_path).resume_latest()


def test_states_load_with_weights_only(tmp_path, monkeypatch):
    t = _trainer(tmp_path, steps=1)
    t.train()
    seen = {}
    real = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: seen.update(k) or real(*a, **k))
    load_state(tmp_path / "checkpoints" / "step_0000001.pt", "cpu")
    assert seen["weights_only"] is True


@pytest.mark.parametrize("how", MODES)
def test_a_corrupt_metrics_json_is_a_result_error_naming_it(tmp_path, how):
    from probing.result import failed
    path = failed("boom", tmp_path, task="synthetic_motion").write(tmp_path)
    ProbeResult.read(path)
    corrupt(path, how)
    with pytest.raises(ResultError, match="metrics.json"):
        ProbeResult.read(path)


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_files_written_atomically_honour_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        write_text_atomic(tmp_path / "a.json", "{}")
        save_module(WALT.from_size("tiny", latent_shape=(2, 4, 4)), tmp_path / "w.safetensors")
    finally:
        os.umask(old)
    for name in ("a.json", "w.safetensors", "w.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask, name


def test_a_failed_trial_keeps_its_own_task_label(tmp_path, synthetic_cache):
    """The backbone fails (corrupt checkpoint): the failed result still names the trial's task
    and t, from its own configuration, not a sibling's."""
    from runners import cli
    from probe_fixtures import smoke_args
    ckpt = save_module(WALT.from_size("tiny", latent_shape=(2, 4, 4)), tmp_path / "w.safetensors")
    corrupt(ckpt, "zeros")
    out = tmp_path / "run"
    assert cli.main(["probe", *smoke_args(out, f"--gin.WALT_CHECKPOINT='{ckpt}'")]) == 2
    result = ProbeResult.read(out / "metrics.json")
    assert result.status == "failed" and "IntegrityError" in result.error
    assert (result.task, result.t, result.block_spec) == ("synthetic_motion", 100, 2)
