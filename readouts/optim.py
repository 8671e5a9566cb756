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


def paper_optimizer(params: Iterable, steps: int, lr: float = 3e-4, warmup: int = 1000,
                    final_lr: float = 1e-7, weight_decay: float = 1e-4, eps: float = 1e-8
                    ) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW (decay on every parameter, as optax applies it unmasked) + per-step LambdaLR.

    warmup: linear warm-up steps, taken as given (Table 7: 1,000 for every dataset). It is not
    shortened for short runs: a run whose warm-up is most of its steps is a configuration
    error to fix where the steps are set (gin: WARMUP next to STEPS), not here. A warm-up of
    at least `steps` is refused: such a run would never reach `lr`.
    Call scheduler.step() after every optimizer.step().
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1; received {steps}")
    if warmup < 0 or (warmup > 0 and warmup >= steps):
        raise ValueError(f"warm-up of {warmup} steps does not fit a {steps}-step run: the lr "
                         f"would never reach its peak. Set PaperOptimizer.warmup (gin macro "
                         f"WARMUP) below Probe.steps, e.g. {steps // 10} (10 %)")
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, eps=eps)
    kwargs = dict(steps=steps, warmup=warmup, peak=lr, final=final_lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine(step, **kwargs) / lr)
    return optimizer, scheduler
