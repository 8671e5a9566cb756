"""Gin bindings as data: a trial's sample -> binding strings -> a stable folder name, and back.

Shared by the sweep (which writes them) and the report (which reads a trial's own bindings).
"""

from __future__ import annotations

import ast
import hashlib
import json
from typing import Any, Iterable, Mapping


def render_value(value) -> str:
    """A Python value as gin text; strings starting with '@' or '%' are gin references."""
    if isinstance(value, str) and value[:1] in "@%":
        return value
    return repr(value)


def to_bindings(sample: Mapping[str, Any]) -> list[str]:
    """A trial's sampled config {binding: value | bundle dict} -> ordered gin binding strings."""
    out = []
    for key in sorted(sample):
        value = sample[key]
        if isinstance(value, Mapping):
            out += [f"{k} = {render_value(v)}" for k, v in sorted(value.items()) if k != "__name__"]
        else:
            out.append(f"{key} = {render_value(value)}")
    return out


def trial_key(sample: Mapping[str, Any], base: Mapping) -> str:
    """A stable folder name for a trial: readable axes + a hash of everything that defines it."""
    canon = json.dumps({"base": base, "sample": sample}, sort_keys=True, default=str)
    digest = hashlib.sha256(canon.encode()).hexdigest()[:10]
    parts = []
    for key in sorted(sample):
        value = sample[key]
        if isinstance(value, Mapping):
            value = value.get("__name__") or "+".join(str(v) for k, v in sorted(value.items()))
        short = key.split(".")[-1]
        parts.append(f"{short}={value}")
    slug = "".join(c if c.isalnum() or c in "=.-+" else "_" for c in ",".join(parts))[:80]
    return f"{slug}_{digest}" if slug else digest


def _literal(text: str):
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError):
        return text.strip()


def parse_bindings(bindings: Iterable[str]) -> dict:
    """['Probe.block = 2', ...] -> {'Probe.block': 2, ...} (references kept as text)."""
    out = {}
    for b in bindings:
        if "=" in b:
            k, v = b.split("=", 1)
            out[k.strip()] = _literal(v)
    return out
