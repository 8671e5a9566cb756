"""Pretraining at tiny size on the CPU: both stages, exact resume, identical I/V settings, bad input."""

import json
import os
import sys

import pytest
import torch
from torch import nn

from pretraining.data import LatentBank, check_clip_shape
from pretraining.loop import (Dist, LoopConfig, NonFiniteLossError, ResumeMismatchError, Trainer,
                                   latest_checkpoint)
from pretraining.stages import run_stage
from runners.gin_setup import GinArgs, save_operative_config
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the shared tiny fixtures
from pretrain_fixtures import MovingSquares, run_settings, tiny_config  # noqa: E402


def save_gin(run_dir):
    """What the CLI passes as run_stage's save_config: the (empty) gin config of the run."""
    save_operative_config(run_dir, GinArgs())


@pytest.fixture(scope="module")
def tokenizer_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tok")
    result = run_stage(tiny_config(stage="tokenizer", steps=2, fractions=(1.0,)), run_settings(out), save_gin)
    return out, result


def diffusion(tokenizer_run, out, resume=False, **kw):
    tok_dir = tokenizer_run[0]
    cfg = tiny_config(stage="diffusion", tokenizer_checkpoint=str(tok_dir / "export" / "tokenizer.safetensors"), **kw)
    return run_stage(cfg, run_settings(out), save_gin, resume=resume)


def test_tokenizer_stage_stores_latent_stats_and_psnr(tokenizer_run):
    from walt.checkpoint import load_tokenizer
    out, result = tokenizer_run
    tok = load_tokenizer(out / "export" / "tokenizer.safetensors")
    assert not torch.allclose(tok.latent_std, torch.ones_like(tok.latent_std))
    assert result["evals"][-1]["val_psnr"] > 0 and result["step"] == 2
    for name in ("loss_curve.png", "run.json", "operative_config.gin", "samples/recon_step0000002.png"):
        assert (out / name).is_file(), name


def test_resume_reproduces_uninterrupted_run(tokenizer_run, tmp_path):
    settings = dict(steps=4, checkpoint_every=2, fractions=(1.0,), sample_steps=1)
    full = diffusion(tokenizer_run, tmp_path / "full", **settings)
    cfg_dir = tmp_path / "killed"
    tok = str(tokenizer_run[0] / "export" / "tokenizer.safetensors")
    cfg = tiny_config(stage="diffusion", tokenizer_checkpoint=tok, **settings)
    first = run_stage(cfg, run_settings(cfg_dir), save_gin, stop_after=2)
    assert first["step"] == 2
    resumed = run_stage(cfg, run_settings(cfg_dir), save_gin, resume=True)
    h_full = json.loads((tmp_path / "full" / "history.json").read_text())
    h_res = json.loads((cfg_dir / "history.json").read_text())
    assert h_res["step"] == [1, 2, 3, 4] and h_res["loss"] == h_full["loss"]
    a = torch.load(latest_checkpoint(tmp_path / "full"), weights_only=False)
    b = torch.load(latest_checkpoint(cfg_dir), weights_only=False)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert resumed["identity"] == full["identity"]


def test_image_and_video_runs_differ_only_in_variant(tokenizer_run, tmp_path):
    runs = {v: diffusion(tokenizer_run, tmp_path / v, variant=v, steps=1, fractions=(1.0,), sample_steps=1)
            for v in ("image", "video")}
    ident = {v: r["identity"] for v, r in runs.items()}
    assert {k for k in ident["image"] if ident["image"][k] != ident["video"][k]} == {"variant"}
    sets = {v: r["settings"] for v, r in runs.items()}
    assert {k for k in sets["image"] if sets["image"][k] != sets["video"][k]} == {"variant"}
    with pytest.raises(ResumeMismatchError, match="variant"):
        diffusion(tokenizer_run, tmp_path / "image", variant="video", steps=1, fractions=(1.0,), resume=True)


def test_batches_share_draws_across_variants_and_ranks():
    bank = LatentBank(torch.randn(6, 8, 2, 2, 2), torch.randn(6, 5, 8, 2, 2))
    kw = dict(seed=3, step=7, batch_size=4, image_fraction=0.5, num_timesteps=1000)
    img, vid = bank.batch(variant="image", **kw), bank.batch(variant="video", **kw)
    assert img["independent_frames"].all()
    assert torch.equal(img["t"], vid["t"]) and torch.equal(img["noise"], vid["noise"])
    stacks = vid["independent_frames"]
    assert torch.equal(img["z0"][stacks], vid["z0"][stacks])
    halves = [bank.batch(variant="video", rank=r, world_size=2, **kw) for r in (0, 1)]
    assert torch.equal(torch.cat([h["z0"] for h in halves]), vid["z0"])


@pytest.mark.parametrize("frames,size,match", [(6, 16, "1 \\+ 4k"), (5, 12, "divisible by 8"),
                                               (9, 16, "configured for 5 x 16 x 16")])
def test_bad_clip_shapes_are_named(frames, size, match):
    with pytest.raises(ValueError, match=match):
        check_clip_shape(frames, size, size, expected=(5, 16, 16))


def test_wrong_data_shape_fails_before_training(tmp_path):
    cfg = tiny_config(stage="tokenizer", train_data=MovingSquares(4, num_frames=9))
    with pytest.raises(ValueError, match="configured for 5 x 16 x 16"):
        run_stage(cfg, run_settings(tmp_path), save_gin)


def test_existing_run_needs_resume(tokenizer_run):
    with pytest.raises(ValueError, match="--resume"):
        run_stage(tiny_config(stage="tokenizer", steps=2), run_settings(tokenizer_run[0]), save_gin)


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    model = nn.Linear(2, 1)

    def loss_fn(step, m):
        loss = m(torch.ones(1, 2)).pow(2).mean()
        return (loss * float("nan") if step >= 3 else loss), {}

    cfg = LoopConfig(steps=6, warmup=0, checkpoint_every=2, fractions=(1.0,), log_every=1, ema_decay=0.9)
    trainer = Trainer(model, cfg, tmp_path, Dist(), {"stage": "toy"}, loss_fn, log=lambda m: None)
    with pytest.raises(NonFiniteLossError, match="step 4.*step_0000002.pt"):
        trainer.train()
    assert latest_checkpoint(tmp_path).name == "step_0000002.pt"
