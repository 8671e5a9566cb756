"""`walt-probe`: one entry point, one subcommand per stage of the study.

Each subcommand lives in its own module under `runners/` and exposes
  add_arguments(parser)            optional, subcommand-specific flags
  main(args, gin_args) -> int      runs after gin has been parsed and validated
  USES_GIN = True|False            optional; False skips gin parsing (e.g. `report`)

The CLI parses and validates gin *before* importing anything heavy, so a typo in a binding
costs a second, not a model build.

Errors: every problem the user can fix raises a `walt_probe.errors.WaltProbeError` (bad gin,
a missing or corrupt checkpoint, a dataset folder in the wrong format, ...). `main` catches them
here, once, and prints one line naming the problem and the fix, exit 2 (a diverged pretraining:
1); the traceback only with --debug or WALT_PROBE_DEBUG=1. Any other exception is a bug and
keeps its traceback (exit 1).
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
import traceback
from typing import Sequence

from runners import gin_setup
from walt_probe.errors import WaltProbeError, debug_requested, one_line

COMMANDS = {
    "pretrain": ("runners.pretrain", "train the tokenizer, then I-WALT or V-WALT (diffusion)"),
    "extract": ("runners.extract", "cache captured activations for a grid's blocks at one t"),
    "probe": ("runners.probe", "train and evaluate one readout on one block at one t"),
    "sweep": ("runners.sweep", "Ray Tune grid of probes (block x timestep, scale, variants)"),
    "baseline": ("runners.baseline", "score a task's trivial (input-free) predictor for the report"),
    "report": ("runners.report", "collect sweep results into a CSV, the paper's plots, summary.md"),
    "visualize": ("runners.visualize", "parameter tables, contact sheets, PCA of features"),
    "list": ("runners.listing", "what can be bound: tasks, backbones, sizes, experiments, macros"),
}


def _chosen_command(argv: Sequence[str]) -> str | None:
    return next((a for a in argv if a in COMMANDS), None)


def build_parser(argv: Sequence[str] = ()) -> tuple[argparse.ArgumentParser, dict]:
    """The parser; only the chosen command's module is imported (keeps --help and errors fast)."""
    parser = argparse.ArgumentParser(
        prog="walt-probe",
        description="What do image and video diffusion models know? Pretrain I-WALT / V-WALT, "
                    "capture their activations at a noise level and block, train readouts, sweep "
                    "grids with Ray Tune, draw the comparison plots. Every component is chosen by "
                    "gin: --gin_file (repeatable), --gin_bindings / --gin_param (repeatable), "
                    "--gin.Name.param=value, --gin_search_paths.",
        epilog="Run 'walt-probe COMMAND --help' for a command's flags.")
    parser.add_argument("--debug", action="store_true", default=False, help=DEBUG_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    modules = {}
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        # SUPPRESS: a subcommand's default must not overwrite a --debug given before it.
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
        gin_setup.add_gin_flags(p)
        if name != _chosen_command(argv):
            continue
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name != module_name:
                raise
            module = None
        if module is not None and hasattr(module, "add_arguments"):
            module.add_arguments(p)
        modules[name] = module
    return parser, modules


DEBUG_HELP = ("show the traceback of input errors too (also: WALT_PROBE_DEBUG=1); by default they "
              "print one line naming the problem and the fix")


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one command; returns its exit status (0 ok, 1 a bug or a diverged run, 2 bad input)."""
    argv = gin_setup.rewrite_shorthand(sys.argv[1:] if argv is None else list(argv))
    command = _chosen_command(argv) or "?"
    try:
        return _run(argv)
    except WaltProbeError as err:
        # The one place user errors are reported (see the module docstring).
        if debug_requested("--debug" in argv):
            traceback.print_exc()
        kind = "gin error: " if isinstance(err, gin_setup.GinError) else ""
        print(f"walt-probe {command}: {kind}{_without_gin_context(one_line(err))}", file=sys.stderr,
              flush=True)
        return err.exit_code


# gin appends "In call to configurable 'X' (<function ...>)" to errors raised inside a configurable;
# the message already names the input, and the object address is noise in a one-line report.
_GIN_CONTEXT = re.compile(r"\s*In call to configurable '[^']+' \(<[^>]*>\)")


def _without_gin_context(text: str) -> str:
    return _GIN_CONTEXT.sub("", text).strip()


def _run(argv: list[str]) -> int:
    parser, modules = build_parser(argv)
    args = parser.parse_args(argv)
    module = modules.get(args.command)
    gin_args = gin_setup.gin_args_from(args)
    if getattr(module, "USES_GIN", True):
        from runners import configurables  # noqa: F401  registers every name (imports torch)
        gin_setup.parse(gin_args)
    if module is None:
        print(f"walt-probe {args.command}: this command is not part of this build.", file=sys.stderr)
        return 2
    return int(module.main(args, gin_args) or 0)


if __name__ == "__main__":
    sys.exit(main())
