"""`walt-probe extract`: capture the activations of every block a grid needs, at one t, into the cache.

  walt-probe extract --gin_file=experiments/probe_objects.gin [--split train --split val]
                     [--blocks 0,2,4] [--gin.Probe.timestep=200]

The work is probing/extract.py's `ensure_entry`; this module reads the probe's settings from gin.
"""

from __future__ import annotations

from probing.extract import ConfigError, ensure_probe_entry, resolve_block

# ----------------------------------------------------------------------------- CLI

def add_arguments(parser) -> None:
    parser.add_argument("--split", action="append", default=None,
                        help="split to extract (repeatable; default: train and val)")
    parser.add_argument("--blocks", default=None,
                        help="comma-separated blocks (ints or fractions of depth); default: "
                             "Probe.cache_blocks plus Probe.block")


def _parse_blocks(text: str) -> list:
    out = []
    for tok in text.split(","):
        tok = tok.strip()
        if not tok:
            continue
        try:
            out.append(int(tok) if tok.lstrip("-").isdigit() else float(tok))
        except ValueError:
            raise ConfigError(f"--blocks item '{tok}' is neither an int nor a fraction of depth "
                              f"(e.g. --blocks 0,4,0.66)") from None
    return out


def main(args, gin_args) -> int:
    from probing.probe import place_backbone
    from runners import configurables, trial

    # Bad input raises a walt_probe.errors.WaltProbeError, reported by runners/cli.py.
    probe = trial.build_probe()
    place_backbone(probe.backbone, configurables.Run().torch_device())
    specs = _parse_blocks(args.blocks) if args.blocks else [probe.block, *probe.cache_blocks]
    blocks = sorted({resolve_block(s, probe.backbone.num_blocks) for s in specs})
    for split in args.split or ["train", "val"]:
        try:
            entry, created = ensure_probe_entry(probe, split, blocks)
        except KeyError:
            raise ConfigError(f"task {probe.task.name} has no split {split!r} (it has "
                              f"{sorted(probe.task.datasets)}); pass --split with one of them") from None
        print(f"{'extracted' if created else 'cached   '} {probe.task.name}/{split} t={probe.timestep} "
              f"blocks={list(entry.blocks)} n={entry.num_examples} -> {entry.path}")
    return 0
