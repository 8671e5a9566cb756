"""The cache key decides, in one place, which Probe settings invalidate a cache entry; the sweep's
readout-only axes are derived from it."""

import dataclasses
import inspect

from probing import extract
from probing.probe import READOUT_ONLY_FIELDS, Probe
from runners import sweep


def test_every_probe_field_is_either_an_entry_field_or_readout_only():
    names = {f.name for f in dataclasses.fields(Probe)}
    assert set(extract.ENTRY_FIELDS) <= names
    assert set(READOUT_ONLY_FIELDS) == names - set(extract.ENTRY_FIELDS)
    assert {"block", "steps", "batch_size", "optimizer"} <= set(READOUT_ONLY_FIELDS)


def test_readout_only_fields_do_not_reach_the_cache_key(monkeypatch):
    seen = []
    params = list(inspect.signature(extract.ensure_entry).parameters)
    key_args = params[:8] + ["views", "noise_draws"]  # through noise_seed, views, noise draws
    monkeypatch.setattr(extract, "ensure_entry", lambda *args, **kwargs: seen.append(
        {k: v for k, v in {**dict(zip(params, args)), **kwargs}.items() if k in key_args})
        or (None, False))
    base = Probe(backbone="bb", task="task", block=2, timestep=100, cache_dir="c")
    extract.ensure_probe_entry(base, "train", [2])
    for name in READOUT_ONLY_FIELDS:
        changed = dataclasses.replace(base, **{name: "changed"})
        extract.ensure_probe_entry(changed, "train", [2])
        assert seen[-1] == seen[0], f"Probe.{name} reaches the cache key but is listed readout-only"


def test_the_sweep_groups_grid_points_by_the_derived_set():
    assert {f"Probe.{n}" for n in READOUT_ONLY_FIELDS} <= set(sweep.READOUT_ONLY)
    space = {k: {"grid_search": v} for k, v in
             {"Probe.block": [1, 2], "Probe.steps": [5, 10], "Probe.timestep": [0, 200]}.items()}
    assert sweep.cache_groups(space) == [["Probe.timestep = 0"], ["Probe.timestep = 200"]]
