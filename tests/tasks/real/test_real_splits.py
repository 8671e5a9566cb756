"""The split contract of every real reader: 'test' = the official evaluation split, 'train' and
'val' a seeded, deterministic, disjoint partition of the official training split."""

import pytest

from tasks.real.common import DatasetFormatError, carve_val, check_split


def _parts(keys, **kw):
    items = list(range(len(keys)))
    return (carve_val(items, keys, "train", **kw), carve_val(items, keys, "val", **kw))


def test_partition_is_disjoint_complete_and_sized():
    keys = [f"clip{i:04d}" for i in range(1000)]
    train, val = _parts(keys, val_fraction=0.05, seed=0)
    assert not set(train) & set(val) and sorted(train + val) == list(range(1000))
    assert len(val) == 50 and train == sorted(train)          # original order kept


def test_partition_is_deterministic_and_seeded():
    keys = [f"scene{i:04d}_00" for i in range(200)]
    assert _parts(keys, val_fraction=0.1, seed=0) == _parts(keys, val_fraction=0.1, seed=0)
    assert _parts(keys, val_fraction=0.1, seed=0)[1] != _parts(keys, val_fraction=0.1, seed=1)[1]


def test_membership_does_not_depend_on_listing_order_or_missing_items():
    keys = [f"yt{i:05d}" for i in range(500)]
    val = {keys[i] for i in _parts(keys, val_fraction=0.1, seed=3)[1]}
    shuffled = keys[::-1]
    assert {shuffled[i] for i in _parts(shuffled, val_fraction=0.1, seed=3)[1]} == val
    # A copy of the dataset missing a few clips (Kinetics takedowns) keeps the others' sides.
    fewer = keys[10:]
    val_fewer = {fewer[i] for i in _parts(fewer, val_fraction=0.1, seed=3)[1]}
    assert len(val_fewer & val) >= len(val) - 12


def test_items_sharing_a_key_stay_together():
    keys = [f"scene{i // 5}" for i in range(100)]             # 5 frames per scene
    train, val = _parts(keys, val_fraction=0.2, seed=0)
    assert not {keys[i] for i in train} & {keys[i] for i in val}
    assert len(val) == 20


def test_bad_arguments():
    with pytest.raises(DatasetFormatError, match="at least 2 are needed"):
        carve_val([0], ["only"], "val", val_fraction=0.1)
    with pytest.raises(DatasetFormatError, match="val_fraction = 1.5"):
        carve_val([0, 1], ["a", "b"], "val", val_fraction=1.5)
    with pytest.raises(DatasetFormatError, match="split 'validation' not found"):
        check_split("validation", "x")
