"""`walt-probe probe`: train and evaluate one readout on one block's activations at one timestep.

  walt-probe probe --gin_file=experiments/probe_base_small.gin [--gin.Probe.block=4]
  walt-probe probe --eval_only --head RUN_DIR [--split test] [--out DIR] [--gin.X.y=...]

Prints one line (headline metric, direction, where the features came from) and writes
metrics.json, operative_config.gin, a TensorBoard log and the kept readout (head.safetensors,
head.json, predictions.npz) to Run.output_dir. With --eval_only it trains nothing: it rebuilds
the run's configuration from RUN_DIR/operative_config.gin (then the given gin files and bindings,
e.g. another dataset of the same task), loads the kept head and evaluates it on --split, writing
metrics.json and predictions.npz to --out (default RUN_DIR/eval/<split>). Exit status: 0 ok,
1 when the loss diverged (no metric is reported), 2 on bad input (reported by runners/cli.py).
"""

from __future__ import annotations


def add_arguments(parser) -> None:
    group = parser.add_argument_group("re-evaluate a kept head (no training)")
    group.add_argument("--eval_only", action="store_true",
                       help="evaluate the head kept in --head instead of training one")
    group.add_argument("--head", metavar="RUN_DIR", default=None,
                       help="run folder with head.safetensors, head.json, operative_config.gin")
    group.add_argument("--split", default="val", help="split to evaluate on (default: %(default)s)")
    group.add_argument("--out", default=None, help="output folder (default: RUN_DIR/eval/<split>)")


def main(args, gin_args) -> int:
    from runners import trial

    # Bad input raises a walt_probe.errors.WaltProbeError, reported once by runners/cli.py.
    if getattr(args, "eval_only", False):
        if not args.head:
            raise trial.ConfigError("--eval_only needs --head RUN_DIR (a probe's run folder)")
        result = trial.eval_kept(gin_args, args.head, args.split, args.out)
    else:
        if getattr(args, "head", None):
            raise trial.ConfigError("--head is read only with --eval_only")
        result = trial.run_probe(gin_args)
    return 0 if result.status == trial.STATUS_OK else 1
