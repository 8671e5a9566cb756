"""The three splits of an analog: disjoint draws (seeded apart by the split's name), each
deterministic, the test split held out of train and val."""

import numpy as np

from tasks.synthetic import builders


def _videos(ds) -> list[bytes]:
    return [ds[i]["video"].numpy().tobytes() for i in range(len(ds))]


def test_train_val_test_disjoint_and_deterministic(tmp_path):
    sizes = dict(num_train=4, num_val=3, num_test=3, image_size=32, num_frames=5)
    one = builders.analog_datasets("depth", cache_dir=str(tmp_path / "a"), **sizes)
    assert {k: len(v) for k, v in one.items()} == {"train": 4, "val": 3, "test": 3}
    clips = {split: _videos(ds) for split, ds in one.items()}
    seen = [c for split in clips.values() for c in split]
    assert len(set(seen)) == len(seen), "a clip appears in two splits (or twice in one)"
    # A fresh render in another cache folder gives the same bytes, split by split.
    two = builders.analog_datasets("depth", cache_dir=str(tmp_path / "b"), **sizes)
    for split in clips:
        assert _videos(two[split]) == clips[split], split
        assert np.array_equal(one[split][0]["depth"].numpy(), two[split][0]["depth"].numpy())


def test_test_split_defaults_to_val_size_and_task_exposes_it(tmp_path):
    task = builders.box_tracks_task(cache_dir=str(tmp_path), num_train=2, num_val=2,
                                    image_size=32, num_frames=5)
    assert len(task.split("test")) == 2
    none = builders.analog_datasets("objects", cache_dir=str(tmp_path), num_train=2, num_val=1,
                                    num_test=0, image_size=32)
    assert set(none) == {"train", "val"}
