"""The project's error classes: one base, `WaltProbeError`, for every problem the user can fix.

Every package (walt/, backbones/, tasks/, probing/, pretraining/, runners/) raises these, and the
CLI catches them once, at its top (runners/cli.py): it prints one or two lines naming the problem
and the fix and exits with the error's `exit_code` (2: bad input), the traceback only with
`--debug` or WALT_PROBE_DEBUG=1. Anything else is a bug: it keeps its traceback and exits 1.

Why a top-level package: the error classes must be importable from every package without
breaking the import direction (DESIGN.md: `walt/` imports nothing of ours, `tasks/` only
`readouts/`), and from the CLI before torch is imported (importing `walt` imports torch; a gin
typo must cost a second). This module imports only the standard library.

A message says what is wrong, with which input (file, binding, value), and how to fix it. The
families (each subclasses ValueError or RuntimeError as the built-in it replaces, so older
`except ValueError` callers keep working):

  ConfigurationError   a setting cannot work (gin binding, Probe / Pretrain field, CLI flag)
  DatasetError         data on disk does not match the layout a reader expects
  CheckpointError      weights missing, unreadable, of another kind or another size
  CacheError           a feature-cache entry cannot be used
  IntegrityError       bytes on disk differ from the digest recorded when they were written
  ResultFileError      a result file (metrics.json) cannot be read
"""

from __future__ import annotations

import os

DEBUG_ENV = "WALT_PROBE_DEBUG"


class WaltProbeError(Exception):
    """A problem with the user's input or files; the message names it and the fix.

    exit_code: what the CLI exits with (2 = bad input; a training that diverged uses 1).
    """

    exit_code = 2


class ConfigurationError(WaltProbeError, ValueError):
    """A configuration value (gin binding, settings field, CLI flag) cannot work."""


class DatasetError(WaltProbeError, ValueError):
    """Data on disk is missing or does not match the layout its reader expects."""


class CheckpointError(WaltProbeError, ValueError):
    """A checkpoint is missing, unreadable, of another kind, or does not fit the configured model."""


class CacheError(WaltProbeError, RuntimeError):
    """A feature-cache entry cannot be used (written for another key, incomplete, locked)."""


class IntegrityError(WaltProbeError, RuntimeError):
    """A file's bytes differ from the digest recorded when it was written (corruption or tampering).

    path: the file; recovery: what to do (re-extract, re-download, re-train).
    """

    def __init__(self, path, recovery: str, detail: str = ""):
        self.path, self.recovery = str(path), recovery
        super().__init__(f"{path} is corrupt: {detail or 'its digest differs from the recorded one'}; "
                         f"{recovery}")


class ResultFileError(WaltProbeError, ValueError):
    """A result file is missing a field, has one of the wrong type, or is not a result at all."""


class TrainingDivergedError(WaltProbeError, RuntimeError):
    """Training produced a non-finite loss: not bad input, but a stated outcome with a fix."""

    exit_code = 1


def debug_requested(flag: bool = False) -> bool:
    """True when tracebacks of user errors should be shown (`--debug` or WALT_PROBE_DEBUG=1)."""
    return flag or os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def one_line(err: BaseException) -> str:
    """The error's message on one line (a multi-line message is joined)."""
    lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()]
    return " ".join(lines) if lines else type(err).__name__
