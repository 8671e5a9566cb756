"""Readout heads, losses and metrics (pure PyTorch; no gin, no Ray, no backbone calls)."""
