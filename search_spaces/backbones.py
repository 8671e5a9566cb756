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
