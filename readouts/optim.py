"""The paper's readout optimiser (App. E): AdamW, linear warm-up to 3e-4, cosine decay to 1e-7.

Schedule as optax's `warmup_cosine_decay_schedule` with decay_steps = total steps:
  lr(s) = peak * s / W                                              for s < W
  lr(s) = final + (peak - final) * (1 + cos(pi * (s - W) / (S - W))) / 2   for W <= s <= S

`warmup_cosine` is the project's one learning-rate schedule (readouts here; pretraining's loop
calls it with count_from=1, peak=1 as a factor of its base lr).
"""

from __future__ import annotations

import math
from typing import Iterable

import torch

# Short runs (smoke tests, the mini-study) would spend all their steps warming up at the
# paper's 1,000; warm-up is capped at this fraction of the run instead.
MAX_WARMUP_FRACTION = 0.1


def warmup_cosine(step: int, *, steps: int, warmup: int, peak: float = 1.0, final: float = 0.0,
                  count_from: int = 0) -> float:
    """The learning rate (or, with peak = 1, the lr factor) at `step` of a `steps`-long run.

    step: optimizer updates already taken (0 for the first update).
    warmup: W, linear warm-up steps: lr = peak * (step + count_from) / W for step < W, so
      count_from = 0 gives optax's schedule (the first update at lr 0; the readouts) and
      count_from = 1 starts at peak / W (no update wasted at lr 0; pretraining).
    Then cosine from peak at step W to `final` at step `steps` (held at `final` beyond).
    """
    if step < warmup:
        return peak * (step + count_from) / warmup
    progress = min(1.0, (step - warmup) / max(1, steps - warmup))
    return final + (peak - final) * 0.5 * (1.0 + math.cos(math.pi * progress))


def effective_warmup(steps: int, warmup: int) -> int:
    """The paper's warm-up, capped at MAX_WARMUP_FRACTION of the run."""
    return max(0, min(warmup, int(MAX_WARMUP_FRACTION * steps)))


def paper_optimizer(params: Iterable, steps: int, lr: float = 3e-4, warmup: int = 1000,
                    final_lr: float = 1e-7, weight_decay: float = 1e-4, eps: float = 1e-8
                    ) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW (decay on every parameter, as optax applies it unmasked) + per-step LambdaLR.

    Call scheduler.step() after every optimizer.step().
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1; received {steps}")
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, eps=eps)
    kwargs = dict(steps=steps, warmup=effective_warmup(steps, warmup), peak=lr, final=final_lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine(step, **kwargs) / lr)
    return optimizer, scheduler
