"""The readouts' parameter counts equal the paper's (Tables 5-6) at D = 1024, 17 frames."""

import pytest
import torch

from readouts.attentive import PAPER_CLASSIFICATION, AttentiveReadout, paper_classification_readout
from readouts.depth import DepthReadout
from readouts.layers import count_parameters
from readouts.pose import PoseReadout
from readouts.tracking import TrackingReadout

PAPER_COUNTS = {
    "imagenet": 7_678_184, "places365": 7_189_869, "inat2018": 13_170_382,
    "ssv2": 7_042_990, "k400": 11_975_056, "k700": 12_282_556,
}


def _count(build) -> int:
    with torch.device("meta"):
        return count_parameters(build())


@pytest.mark.parametrize("dataset", sorted(PAPER_COUNTS))
def test_classification_counts(dataset):
    assert _count(lambda: paper_classification_readout(dataset, 1024, 17)) == PAPER_COUNTS[dataset]


@pytest.mark.parametrize("build, expected", [
    (lambda: PoseReadout(1024), 1_650_444),
    (lambda: DepthReadout(1024, 256), 3_284_353),
    (lambda: TrackingReadout(1024, "points"), 12_897_668),
    (lambda: TrackingReadout(1024, "boxes"), 12_931_462),
], ids=["pose", "depth", "points", "boxes"])
def test_other_counts(build, expected):
    assert _count(build) == expected


@pytest.mark.parametrize("d, p, c, t", [(64, 32, 10, 1), (256, 128, 7, 17), (1024, 768, 3, 5)])
def test_attentive_count_formula(d, p, c, t):
    """Spec 2.2: 2D + T*D + Q*P + 2(D*P + P) + (P*P + P) + 2P + (8P^2 + 5P) + (P*C + C)."""
    expected = 2 * d + t * d + p + 2 * (d * p + p) + (p * p + p) + 2 * p + 8 * p * p + 5 * p + p * c + c
    assert _count(lambda: AttentiveReadout(d, c, num_frames=t, width=p, num_heads=4)) == expected


@pytest.mark.parametrize("d", [64, 384])
def test_point_tracking_count_is_linear_in_width(d):
    """Spec 5.1: 9,751,940 + 3,072 D (only the 3 blocks' k and v projections depend on D)."""
    assert _count(lambda: TrackingReadout(d)) == 9_751_940 + 3_072 * d


def test_paper_table_lists_the_six_datasets():
    assert set(PAPER_CLASSIFICATION) == set(PAPER_COUNTS)
