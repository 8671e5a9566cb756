"""Readout heads, losses and metrics (pure PyTorch; no gin, no Ray, no backbone calls).

Heads take one block's activations (b, t, h, w, D) (tracking also takes queries):
  attentive.AttentiveReadout   classification / action recognition (paper counts in
                               attentive.PAPER_CLASSIFICATION)
  pose.PoseReadout             first|last frame -> [R | t], special Procrustes
  depth.DepthReadout           SRT-style per-pixel decoder
  tracking.TrackingReadout     MooG recurrent tracker, points or boxes
losses.py (training losses), metrics.py + tapvid.py (pure metric functions),
accumulators.py (split-level reductions), optim.py (the paper's AdamW schedule),
resample.py (cubic time resampling), layers.py (shared blocks).
"""
