"""Gin on the command line: T5X-style flags, validated parsing, and the operative config.

Flags (every subcommand):
  --gin_file PATH            repeatable; resolved against --gin_search_paths, then the cwd
  --gin_bindings 'A.b = 1'   repeatable; alias --gin_param
  --gin.A.b=1                shorthand, rewritten to --gin_bindings='A.b = 1' before parsing
  --gin_search_paths a,b     comma-separated; default: the repo's gin/ folder

Order: files in the order given, then bindings in the order given; the later one wins.

Bad input fails before any heavy work with a `GinError` that names the file or binding and,
where possible, the nearest valid name (difflib over the registered configurables, their
parameters, the macros the files define, or the gin files on the search path).
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import json
import logging
import os
import re
import tokenize
from pathlib import Path
from typing import Sequence

import gin

from walt.checkpoint import write_text_atomic  # noqa: F401  (re-exported for the commands)
from walt_probe.errors import ConfigurationError

REPO_ROOT = Path(__file__).resolve().parent.parent
GIN_PACKAGE = "walt_probe_gin"  # the gin/ folder's name in an installed wheel (pyproject.toml)


def _default_search_path() -> Path:
    """The repository's gin/ folder, or, when installed from a wheel, the same files shipped as
    the package data folder `walt_probe_gin` (gin/ itself has no __init__.py: it must never
    shadow the `gin` package)."""
    repo = REPO_ROOT / "gin"
    if repo.is_dir():
        return repo
    spec = importlib.util.find_spec(GIN_PACKAGE)
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return repo


DEFAULT_SEARCH_PATH = _default_search_path()

_SHORTHAND = re.compile(r"^--gin\.([^=]+)=(.*)$", re.DOTALL)


def _drop_gin_probe_noise(record: logging.LogRecord) -> bool:
    # gin first tries every include as a Python-package resource and logs a root-level ERROR
    # ("Path not found") when it is not one, before finding the file on the search path.
    return not (record.pathname.endswith(os.path.join("gin", "resource_reader.py"))
                and record.getMessage().startswith("Path not found"))


logging.getLogger().addFilter(_drop_gin_probe_noise)


class GinError(ConfigurationError):
    """A gin file or binding the user gave cannot be used; the message says why and what fits."""


@dataclasses.dataclass(frozen=True)
class GinArgs:
    """Plain-data gin configuration: what a Ray trial receives and re-parses in its own process."""

    files: tuple[str, ...] = ()
    bindings: tuple[str, ...] = ()
    search_paths: tuple[str, ...] = (str(DEFAULT_SEARCH_PATH),)

    def with_bindings(self, *more: str) -> "GinArgs":
        return dataclasses.replace(self, bindings=self.bindings + tuple(more))

    def to_dict(self) -> dict:
        return {"files": list(self.files), "bindings": list(self.bindings),
                "search_paths": list(self.search_paths)}


def rewrite_shorthand(argv: Sequence[str]) -> list[str]:
    """`--gin.A.b=1` -> `--gin_bindings=A.b = 1` (T5X's sugar), leaving other args alone."""
    out = []
    for arg in argv:
        m = _SHORTHAND.match(arg)
        out.append(f"--gin_bindings={m.group(1)} = {m.group(2)}" if m else arg)
    return out


def add_gin_flags(parser) -> None:
    """Adds the gin flags to an argparse parser."""
    group = parser.add_argument_group(
        "gin", "Configure any component: files first, then bindings; the later one wins. "
        "Shorthand: --gin.Name.param=value (strings need inner quotes: --gin.X.s=\"'a'\").")
    group.add_argument("--gin_file", action="append", default=[], metavar="PATH",
                       help="gin file (repeatable), relative to --gin_search_paths or the cwd")
    group.add_argument("--gin_bindings", "--gin_param", action="append", default=[],
                       metavar="'Name.param = value'", dest="gin_bindings",
                       help="one gin binding (repeatable); applied after all files")
    group.add_argument("--gin_search_paths", default=str(DEFAULT_SEARCH_PATH), metavar="DIRS",
                       help="comma-separated folders to resolve gin files in (default: %(default)s)")


def gin_args_from(ns) -> GinArgs:
    """Resolves the parsed flags to absolute paths (Ray trials run in another working dir)."""
    search = tuple(str(Path(p).expanduser().resolve()) for p in ns.gin_search_paths.split(",") if p)
    files = tuple(resolve_gin_file(f, search) for f in ns.gin_file)
    return GinArgs(files=files, bindings=tuple(ns.gin_bindings), search_paths=search)


def _all_gin_files(search_paths: Sequence[str]) -> list[str]:
    found = []
    for root in search_paths:
        rootp = Path(root)
        if rootp.is_dir():
            found += [str(p.relative_to(rootp)) for p in rootp.rglob("*.gin")]
    return sorted(found)


def resolve_gin_file(name: str, search_paths: Sequence[str]) -> str:
    """Absolute path of a gin file, or a GinError listing the closest existing files."""
    candidates = [Path(name).expanduser()] if Path(name).is_absolute() else (
        [Path(p) / name for p in search_paths] + [Path.cwd() / name])
    for c in candidates:
        if c.is_file():
            return str(c.resolve())
    near = difflib.get_close_matches(name, _all_gin_files(search_paths), n=3, cutoff=0.4)
    hint = f" Did you mean: {', '.join(near)}?" if near else ""
    raise GinError(f"gin file not found: '{name}' (searched {', '.join(search_paths)} and the "
                   f"current directory).{hint}")


def _registered_names() -> list[str]:
    names = set()
    for key, _ in gin.config._REGISTRY.items():  # full selectors and their short names are both valid
        names.add(key)
        names.add(key.split(".")[-1])
    return sorted(names)


def _macro_names() -> set[str]:
    # Macros are bindings of the configurable 'gin.macro' whose scope is the macro name.
    return {scope for (scope, selector) in gin.config._CONFIG if selector == "gin.macro" and scope}


def _explain(binding: str, err: Exception) -> str:
    msg = str(err).splitlines()[0] if str(err) else type(err).__name__
    m = re.search(r"No configurable matching '([^']+)'", msg)
    if m:
        near = difflib.get_close_matches(m.group(1), _registered_names(), n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(near)}?" if near else ""
        return f"unknown configurable '{m.group(1)}' in binding '{binding}'.{hint}"
    m = re.search(r"Configurable '([^']+)' doesn't have a parameter named '([^']+)'", msg)
    if m:
        params = []
        try:
            fn = gin.config._REGISTRY.get_match(m.group(1)).wrapped
            import inspect
            params = list(inspect.signature(fn).parameters)
        except Exception:  # noqa: BLE001 - the hint is best effort, the error is not
            pass
        near = difflib.get_close_matches(m.group(2), params, n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(near)}?" if near else (
            f" Valid parameters: {', '.join(params)}." if params else "")
        return f"'{m.group(1)}' has no parameter '{m.group(2)}' (binding '{binding}').{hint}"
    if "malformed node or string" in msg and "=" in binding:
        # gin evaluates the value as a Python literal: a bare word is a name, not a string.
        lhs, rhs = (part.strip() for part in binding.split("=", 1))
        return (f"binding '{binding}': the value {rhs} is not a Python literal (a bare word is "
                f"not a string). Quote it: --gin.{lhs}=\"'{rhs}'\" (or "
                f"--gin_bindings=\"{lhs} = '{rhs}'\"); references are written @Name() or %MACRO.")
    return f"cannot parse gin binding '{binding}': {msg}"


def parse(args: GinArgs, extra_bindings: Sequence[str] = (), finalize: bool = True) -> None:
    """Clears gin, then parses files, CLI bindings, then `extra_bindings`; later wins.

    The caller imports `runners.configurables` first (it registers every name; the CLI, the
    trial and the sweep do). Raises GinError naming the offending file or binding.
    """

    gin.clear_config()
    for path in args.search_paths:
        gin.add_config_file_search_path(path)
    for f in args.files:
        try:
            gin.parse_config_file(f)
        except (ValueError, KeyError, SyntaxError, TypeError) as err:
            raise GinError(f"in gin file {f}: {_explain('(file)', err)}") from err
        except OSError as err:
            raise GinError(f"gin file {f}: {err}") from err
    file_macros = _macro_names()
    for binding in [*args.bindings, *extra_bindings]:
        lhs = binding.split("=", 1)[0].strip()
        if "=" not in binding:
            raise GinError(f"malformed gin binding '{binding}': expected 'Name.param = value' "
                           f"(or --gin.Name.param=value).")
        if lhs and "." not in lhs and "/" not in lhs and lhs not in file_macros:
            near = difflib.get_close_matches(lhs, sorted(file_macros), n=3, cutoff=0.5)
            hint = (f" Did you mean: {', '.join(near)}?" if near else
                    f" Macros defined by the given files: {', '.join(sorted(file_macros)) or 'none'}.")
            raise GinError(f"binding '{binding}' sets macro '{lhs}', which no gin file defines, so "
                           f"it would change nothing.{hint}")
        try:
            gin.parse_config(binding)
        except (ValueError, KeyError, SyntaxError, TypeError, tokenize.TokenError) as err:
            raise GinError(_explain(binding, err)) from err
    if finalize:
        try:
            gin.finalize()
        except ValueError as err:
            # A required value (`%gin.REQUIRED`) left unset, or a reference to an unknown name.
            m = re.match(r"(\S+) set to `%gin.REQUIRED`", str(err))
            if m:
                key = m.group(1)  # 'MACRO/macro.value' for a macro, 'Name.param' otherwise
                name = key.split("/")[0] if key.endswith(".value") else key
                raise GinError(f"{name} is required but not set: bind it, e.g. --gin.{name}=... "
                               f"(the header of the gin file that declares it says what it takes)") from err
            raise GinError(str(err).splitlines()[0]) from err


def save_operative_config(run_dir: Path, args: GinArgs | None = None) -> Path:
    """Writes operative_config.gin (what was used), config.gin (all bindings) and gin_args.json.

    Call after the run has built its components (gin's operative config lists only what was
    called). `walt-probe probe --gin_file=<run_dir>/operative_config.gin` reruns the run.
    """
    run_dir = Path(run_dir)
    path = run_dir / "operative_config.gin"
    write_text_atomic(path, gin.operative_config_str())
    write_text_atomic(run_dir / "config.gin", gin.config_str())
    if args is not None:
        write_text_atomic(run_dir / "gin_args.json", json.dumps(args.to_dict(), indent=2))
    return path
