"""`walt-probe probe`: train and evaluate one readout on one block's activations at one timestep.

  walt-probe probe --gin_file=experiments/probe_objects_small.gin [--gin.Probe.block=4]

Prints one line (headline metric, direction, where the features came from) and writes
metrics.json, operative_config.gin and a TensorBoard log to Run.output_dir. Exit status: 0 ok,
1 when the loss diverged (no metric is reported), 2 on bad input (reported by runners/cli.py).
"""

from __future__ import annotations


def main(args, gin_args) -> int:
    from runners import trial

    result = trial.run_probe(gin_args)
    return 0 if result.status == trial.STATUS_OK else 1
