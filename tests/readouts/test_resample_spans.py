"""Time resampling on the backbone's frame spans: WALT's causal latents (latent 0 = frame 0,
latent k = frames 4k-3 .. 4k) put every clip frame nearest the latent that covers it."""

import pytest
import torch

from backbones.base import causal_spans, uniform_spans
from readouts.resample import cubic_resize_weights, cubic_weights_at, resize_time, span_positions
from tasks import kinds


def _covering(spans: torch.Tensor, num_frames: int) -> list[int]:
    return [int(((spans[:, 0] <= f) & (f < spans[:, 1])).nonzero()) for f in range(num_frames)]


@pytest.mark.parametrize("t, T", [(5, 17), (2, 5), (8, 16), (4, 4)])
def test_equal_spans_reproduce_the_uniform_resize(t, T):
    x = torch.randn(2, t, 3, 3, 4, dtype=torch.float64)
    torch.testing.assert_close(resize_time(x, T, uniform_spans(T, t)), resize_time(x, T))
    w = cubic_weights_at(span_positions(uniform_spans(T, t), T), t, max(t / T, 1.0),
                         dtype=torch.float64)
    torch.testing.assert_close(w, cubic_resize_weights(t, T, dtype=torch.float64))


def test_causal_spans_read_each_frame_at_the_latent_covering_it():
    spans = causal_spans(17, 4)                                   # [0,1) [1,5) [5,9) [9,13) [13,17)
    pos = span_positions(spans, 17)
    weights = cubic_weights_at(pos, 5, 1.0, dtype=torch.float64)  # (17, 5)
    covering = _covering(spans, 17)
    assert covering == [0] + [1] * 4 + [2] * 4 + [3] * 4 + [4] * 4
    assert weights.argmax(dim=1).tolist() == covering
    assert bool(((pos - torch.tensor(covering)).abs() < 0.5).all())
    # Frame 0 is latent 0 exactly (the kernel interpolates at an integer position).
    x = torch.randn(1, 5, 2, 2, 3, dtype=torch.float64)
    torch.testing.assert_close(resize_time(x, 17, spans)[:, 0], x[:, 0])
    # The uniform resize misplaces frames: frame 5 (covered by latent 2) reads mostly latent 1.
    assert cubic_resize_weights(5, 17, dtype=torch.float64).argmax(dim=1)[5] == 1


def test_one_hot_latent_peaks_on_the_frames_it_covers():
    spans = causal_spans(17, 4)
    for k in range(5):
        x = torch.zeros(1, 5, 1, 1, 1, dtype=torch.float64)
        x[:, k] = 1.0
        y = resize_time(x, 17, spans).flatten()
        inside = (spans[k, 0] <= torch.arange(17)) & (torch.arange(17) < spans[k, 1])
        assert float(y[inside].min()) > float(y[~inside].max())


def test_one_frame_per_feature_is_the_identity_and_bad_spans_are_refused():
    x = torch.randn(2, 17, 2, 2, 3, dtype=torch.float64)
    torch.testing.assert_close(resize_time(x, 17, causal_spans(17, 1)), x)
    with pytest.raises(ValueError, match="contiguous"):
        span_positions(torch.tensor([[0.0, 1.0], [2.0, 5.0]]), 5)
    with pytest.raises(ValueError, match="frame spans given for"):
        resize_time(x, 17, causal_spans(17, 4))


def test_task_kinds_resample_on_the_batch_spans():
    x = torch.randn(2, 5, 2, 2, 3)
    spans = causal_spans(17, 4).float()
    batch = {"depth": torch.ones(2, 17, 4, 4), "feature_spans": spans.expand(2, 5, 2)}
    task = kinds.depth("d", {}, image_size=4)
    (aligned,) = task.head_inputs(x, batch)
    torch.testing.assert_close(aligned, resize_time(x, 17, spans))
    (uniform,) = task.head_inputs(x, {"depth": batch["depth"]})    # no spans: uniform
    torch.testing.assert_close(uniform, resize_time(x, 17))
    mixed = torch.stack([spans, uniform_spans(17, 5).float()])
    with pytest.raises(ValueError, match="different feature_spans"):
        task.head_inputs(x, {**batch, "feature_spans": mixed})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_spans_on_the_features_device_resample_like_host_spans():
    """In training the batch (and its feature_spans) is moved to the GPU with the features."""
    spans = torch.tensor([[0.0, 1.0], [1.0, 5.0], [5.0, 9.0]])
    x = torch.randn(2, 3, 2, 2, 4)
    host = resize_time(x, 9, spans)
    dev = resize_time(x.cuda(), 9, spans.cuda())
    assert torch.allclose(dev.cpu(), host, atol=1e-5)
