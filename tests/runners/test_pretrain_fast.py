"""Issue 18's pretraining additions: augmentation, the mirrored latent bank, background
checkpoint writes that resume exactly, and the 40m size."""

import json
import sys
import os

import torch

from pretraining.data import LatentBank, tokenizer_batch
from pretraining.loop import latest_checkpoint
from pretraining.stages import run_stage

sys.path.insert(0, os.path.dirname(__file__))
from pretrain_fixtures import run_settings, tiny_config  # noqa: E402


def test_augmented_batches_are_flips_and_reversals_of_the_drawn_clips():
    clips = torch.randint(0, 255, (5, 5, 8, 8, 3), dtype=torch.uint8)
    plain = tokenizer_batch(clips, seed=3, step=7, batch_size=16)
    aug = tokenizer_batch(clips, seed=3, step=7, batch_size=16, augment=True)
    assert torch.equal(aug, tokenizer_batch(clips, seed=3, step=7, batch_size=16, augment=True))
    kinds = set()
    for p, a in zip(plain, aug):
        variants = {"same": p, "mirror": p.flip(2), "reverse": p.flip(0), "both": p.flip(2).flip(0)}
        match = [k for k, v in variants.items() if torch.equal(v, a)]
        assert match, "an augmented clip is no flip / reversal of the drawn clip"
        kinds.add(match[0])
    assert len(kinds) >= 3  # 16 coins pairs: all four kinds are near certain, three at least


def test_mirrored_bank_holds_the_mirrored_clips_latents():
    class Enc:  # a tokenizer stand-in whose "latents" are the pixels, so the mirror is visible
        def encode(self, video):  # (b, 3, T, H, W) -> (b, 3, T, H, W)
            return video

        def encode_frames(self, video):  # each frame alone: the same pixels
            return video
    clips = torch.randint(0, 255, (3, 5, 4, 4, 3), dtype=torch.uint8)
    bank = LatentBank.encode(Enc(), clips, device="cpu", chunk=2, mirrored=True)
    assert bank.clip_latents.shape[0] == 6
    assert torch.equal(bank.clip_latents[3:], bank.clip_latents[:3].flip(-1))
    assert torch.equal(bank.frame_latents[4], bank.frame_latents[1].flip(-1))


def test_async_checkpoints_resume_like_the_synchronous_run(tmp_path):
    settings = dict(steps=4, checkpoint_every=2, fractions=(1.0,), augment=True)
    sync = run_stage(tiny_config(**settings), run_settings(tmp_path / "sync"))
    cfg = tiny_config(async_checkpoints=True, **settings)
    run_stage(cfg, run_settings(tmp_path / "async"), stop_after=2)
    run_stage(cfg, run_settings(tmp_path / "async"), resume=True)
    h_sync = json.loads((tmp_path / "sync" / "history.json").read_text())
    h_async = json.loads((tmp_path / "async" / "history.json").read_text())
    assert h_async["loss"] == h_sync["loss"] and sync["identity"]["augment"] is True
    a = torch.load(latest_checkpoint(tmp_path / "sync"), weights_only=False)
    b = torch.load(latest_checkpoint(tmp_path / "async"), weights_only=False)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_40m_size_is_between_small_and_284m():
    from walt.counts import count_walt_parameters
    assert count_walt_parameters("small") < count_walt_parameters("40m") < count_walt_parameters("284m")
    assert 35e6 < count_walt_parameters("40m") < 45e6


def test_deterministic_runs_under_deterministic_kernels_and_restores_the_settings(tmp_path, monkeypatch):
    """Pretrain.deterministic: the stage runs with torch's deterministic algorithms on (what a
    bit-for-bit GPU rerun needs), run.json's identity records it, and the process's settings
    are restored afterwards; a CPU run is the same bit for bit either way."""
    from pretraining import stages

    seen = []
    real = stages.tokenizer_stage

    def spy(*args, **kwargs):
        seen.append((torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark))
        return real(*args, **kwargs)
    monkeypatch.setattr(stages, "tokenizer_stage", spy)
    torch.backends.cudnn.benchmark = True
    try:
        settings = dict(steps=2, checkpoint_every=0, fractions=(1.0,))
        det = run_stage(tiny_config(deterministic=True, **settings), run_settings(tmp_path / "det"))
        assert seen == [(True, False)] and det["identity"]["deterministic"] is True
        assert not torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.benchmark
        plain = run_stage(tiny_config(**settings), run_settings(tmp_path / "plain"))
        assert seen[1] == (False, True) and "deterministic" not in plain["identity"]
    finally:
        torch.backends.cudnn.benchmark = False
    h_det = json.loads((tmp_path / "det" / "history.json").read_text())
    h_plain = json.loads((tmp_path / "plain" / "history.json").read_text())
    assert h_det["loss"] == h_plain["loss"]
