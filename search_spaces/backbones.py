"""Named backbones against each other (paper Fig. 7 against other representation models).

Only backbones that exist in this project can be listed: today the WALT family (any size,
variant and checkpoint through `Backbone.*`). Another backbone plugs in as one more entry
binding `Probe.backbone` to its own gin configurable.
"""

from __future__ import annotations

from typing import Mapping

from walt_probe.errors import ConfigurationError


WALT_VARIANTS = {"I-WALT": {"Backbone.variant": "image"}, "V-WALT": {"Backbone.variant": "video"}}


def backbones(models: Mapping[str, Mapping[str, object]] | None = None) -> dict:
    """Grid over named bundles of bindings, one per backbone.

    models: display name -> {gin binding: value}, e.g.
      {'V-WALT 284m': {'Backbone.size': '284m', 'Backbone.variant': 'video',
                       'Backbone.walt_checkpoint': '/ckpt/v284m.safetensors'}}
      Default: I-WALT and V-WALT at the gin file's size and checkpoints.
    """
    from ray import tune  # imported here so registering spaces in gin stays cheap

    models = dict(models or WALT_VARIANTS)
    for name, bundle in models.items():
        if not bundle or not all(isinstance(k, str) and ("." in k or "/" in k) for k in bundle):
            raise ConfigurationError(f"backbone '{name}': give a non-empty dict of gin bindings "
                                     f"('Configurable.param' -> value), got {bundle!r}")
    return {"backbone": tune.grid_search([{"__name__": name, **bundle} for name, bundle in models.items()])}


def backbone_grids(models: Mapping[str, Mapping[str, object]] | None = None) -> dict:
    """Several backbones, each at its own block x noise grid (one axis of bundles).

    models: display name -> {'bindings': {gin binding: value} (the backbone, e.g.
      {'Probe.backbone': '@build_cogvideox()'}), 'blocks': [ints or depth fractions],
      'timesteps': [native noise values; [0] for encoders without noise]}.
    Each grid point binds the backbone, Probe.block, Probe.timestep and Probe.cache_blocks = all
    of that backbone's blocks, so one extraction per (backbone, t, split) serves every block of
    it (later trials find the entry; probing/extract.ensure_entry). Its name
    '<model> b<block> t<t>' keeps trial folders apart.
    """
    from ray import tune

    if not models:
        raise ValueError("backbone_grids.models is empty: give {name: {'bindings': {...}, "
                         "'blocks': [...], 'timesteps': [...]}}")
    points = []
    for name, spec in models.items():
        missing = [k for k in ("bindings", "blocks", "timesteps") if not spec.get(k)]
        if missing:
            raise ValueError(f"backbone_grids: '{name}' has no {', '.join(missing)} (each model "
                             f"needs bindings, blocks and timesteps)")
        bindings = dict(spec["bindings"])
        if not all(isinstance(k, str) and ("." in k or "/" in k) for k in bindings):
            raise ValueError(f"backbone_grids: '{name}' bindings must be 'Configurable.param' -> "
                             f"value, got {bindings!r}")
        blocks = list(spec["blocks"])
        for block in blocks:
            for t in spec["timesteps"]:
                points.append({"__name__": f"{name} b{block} t{int(t)}", **bindings,
                               "Probe.block": block, "Probe.timestep": int(t),
                               "Probe.cache_blocks": blocks})
    return {"backbone": tune.grid_search(points)}
