"""Model scale: WALT sizes x variants (paper Fig. 7, Sec. 4.5)."""

from __future__ import annotations

from typing import Mapping, Sequence

from walt_probe.errors import ConfigurationError


def scaling(sizes: Sequence[str] = ("284m", "724m", "1p9b"), variants: Sequence[str] = ("image", "video"),
            checkpoints: Mapping[str, str] | None = None, tokenizer_checkpoint: str | None = None) -> dict:
    """Grid over (Backbone.size, Backbone.variant) bundles, with each pair's checkpoint.

    sizes: names of walt/sizes.py WALT_SIZES; variants: 'image' | 'video'.
    checkpoints: '<size>/<variant>' -> WALT checkpoint path; a pair without one runs at random
      init (only meaningful for plumbing tests), so give all of them for a real study.
    tokenizer_checkpoint: the tokenizer shared by all sizes (None keeps the gin value).
    """
    from ray import tune  # imported here so registering spaces in gin stays cheap

    checkpoints = dict(checkpoints or {})
    unknown = sorted(set(checkpoints) - {f"{s}/{v}" for s in sizes for v in variants})
    if unknown:
        raise ConfigurationError(f"checkpoints given for {unknown}, which the grid does not contain "
                                 f"(keys are '<size>/<variant>' with size in {list(sizes)}, variant in {list(variants)})")
    models = []
    for size in sizes:
        for variant in variants:
            bundle = {"Backbone.size": size, "Backbone.variant": variant}
            if f"{size}/{variant}" in checkpoints:
                bundle["Backbone.walt_checkpoint"] = checkpoints[f"{size}/{variant}"]
            if tokenizer_checkpoint is not None:
                bundle["Backbone.tokenizer_checkpoint"] = tokenizer_checkpoint
            models.append(bundle)
    return {"model": tune.grid_search(models)}
