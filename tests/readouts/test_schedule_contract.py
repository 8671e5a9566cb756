"""The one learning-rate schedule reproduces, value for value, the two it replaced: the readouts'
optax-style schedule (count_from=0) and pretraining's factor (count_from=1, peak 1)."""

import math

import pytest

from readouts.optim import warmup_cosine


def _readout_before(step, *, steps, warmup, peak, final):
    if step < warmup:
        return peak * step / warmup
    progress = min(1.0, (step - warmup) / max(1, steps - warmup))
    return final + (peak - final) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _pretrain_before(step, *, steps, warmup, final_ratio):
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, steps - warmup))
    return final_ratio + (1.0 - final_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


@pytest.mark.parametrize("steps,warmup", [(60, 6), (1000, 100), (10, 0), (7, 7)])
def test_both_former_schedules_exactly(steps, warmup):
    for s in range(steps + 3):
        assert warmup_cosine(s, steps=steps, warmup=warmup, peak=3e-4, final=1e-7) == \
            _readout_before(s, steps=steps, warmup=warmup, peak=3e-4, final=1e-7)
        assert warmup_cosine(s, steps=steps, warmup=warmup, final=0.01, count_from=1) == \
            _pretrain_before(s, steps=steps, warmup=warmup, final_ratio=0.01)
