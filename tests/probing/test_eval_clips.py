"""Multi-clip evaluation (Probe.eval_clips): per video, the softmax probabilities of N evenly
spaced clips are averaged and scored once."""

import dataclasses

import numpy as np
import pytest
import torch

from backbones.build import build_backbone
from probing import kept
from probing.probe import ConfigError, FeatureSource, Probe, evaluate
from tasks.real.videos import VideoClassificationDataset
from tasks.synthetic.builders import motion_task
from tasks.task import ClipView


class Views:
    """A dataset with clip(i, view, n): view v of item i is its clip shifted v frames in time."""

    def __init__(self, inner, same: bool = False):
        self.inner, self.same = inner, same

    def __len__(self):
        return len(self.inner)

    def __getitem__(self, i):
        return self.inner[i]

    def clip(self, i, view, num_views):
        item = dict(self.inner[i])
        if not self.same:
            item["video"] = torch.roll(item["video"], shifts=view, dims=0)
        return item


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    import os
    os.environ.setdefault("WALT_PROBE_SYNTHETIC_CACHE", str(tmp_path_factory.mktemp("synthetic")))
    backbone = build_backbone(size="tiny", variant="video", tokenizer="tiny", image_size=32,
                              num_frames=5, seed=0, device="cpu")
    task = motion_task(num_train=4, num_val=6, image_size=32, num_frames=5,
                       head_kwargs={"width": 32, "num_heads": 2})
    torch.manual_seed(0)
    head = task.make_head(backbone.feature_dim)
    return backbone, task, head


def _probe(backbone, task, same=False, **kw):
    task = dataclasses.replace(task, datasets={**task.datasets, "val": Views(task.split("val"), same)})
    return Probe(backbone=backbone, task=task, block=2, timestep=100, eval_batch_size=4, **kw)


def test_identical_views_give_the_single_clip_result(setup):
    backbone, task, head = setup
    one, three = _probe(backbone, task, same=True), _probe(backbone, task, same=True, eval_clips=3)
    gen = torch.Generator()
    keep1, keep3 = kept.Predictions(), kept.Predictions()
    r1 = evaluate(one, head, FeatureSource(one, 2, gen), "cpu", keep=keep1)
    r3 = evaluate(three, head, FeatureSource(three, 2, gen), "cpu", keep=keep3)
    assert r1 == r3
    np.testing.assert_array_equal(keep1.arrays()["pred_label"], keep3.arrays()["pred_label"])


def test_views_average_their_probabilities(setup):
    backbone, task, head = setup
    probe = _probe(backbone, task, eval_clips=3)
    keep = kept.Predictions()
    evaluate(probe, head, FeatureSource(probe, 2, torch.Generator()), "cpu", keep=keep)
    got = keep.arrays()
    # By hand: each view alone, softmax, mean over views, per index.
    total = 0
    for view in range(3):
        alone = dataclasses.replace(probe, eval_clips=1, task=dataclasses.replace(
            probe.task, datasets={"val": ClipView(probe.task.split("val"), view, 3)}))
        k = kept.Predictions()
        evaluate(alone, head, FeatureSource(alone, 2, torch.Generator()), "cpu", keep=k)
        total = total + torch.softmax(torch.as_tensor(k.arrays()["pred_logits"]), -1) / 3
    np.testing.assert_allclose(np.exp(got["pred_logits"]), total.numpy(), rtol=1e-5, atol=1e-6)
    assert got["index"].tolist() == list(range(6))


def test_clear_errors(setup):
    backbone, task, head = setup
    with pytest.raises(ConfigError, match="eval_clips"):
        Probe(backbone=backbone, task=task, eval_clips=0).validate()
    plain = Probe(backbone=backbone, task=task, block=2, timestep=100, eval_clips=2)
    with pytest.raises(ValueError, match="eval_clips must stay 1"):
        evaluate(plain, head, FeatureSource(plain, 2, torch.Generator()), "cpu")


def test_video_windows_are_evenly_spaced():
    ds = VideoClassificationDataset.__new__(VideoClassificationDataset)
    ds.num_frames, ds.stride = 5, 2                                  # span 9 frames
    starts = [int(ds.view_indices(29, v, 3)[0]) for v in range(3)]
    assert starts == [0, 10, 20]                                     # last start that fits: 20
    assert int(ds.view_indices(29, 0, 1)[0]) == 10                   # one view: the centre
