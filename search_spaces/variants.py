"""Image vs video diffusion: I-WALT and V-WALT on every task (paper Fig. 1)."""

from __future__ import annotations

from typing import Sequence

from walt_probe.errors import ConfigurationError


def variants(tasks: Sequence[str] = (), variants: Sequence[str] = ("image", "video"),
             task_macro: str = "TASK") -> dict:
    """Grid over Backbone.variant x the task.

    tasks: gin references of task builders, e.g. ('@SyntheticObjects()', '@SyntheticMotionActions()');
      they are bound to the macro `task_macro` (the experiment's gin files must define it and
      include each task's settings). Empty: keep the gin file's task.
    variants: Backbone.variant values ('image' = I-WALT, 'video' = V-WALT); empty: not swept
      here (e.g. when `backbones()` bundles each variant with its checkpoint).
    """
    from ray import tune  # imported here so registering spaces in gin stays cheap

    space = {"Backbone.variant": tune.grid_search(list(variants))} if variants else {}
    if tasks:
        bad = [t for t in tasks if not str(t).startswith("@")]
        if bad:
            raise ConfigurationError(f"tasks must be gin references such as '@SyntheticObjects()', got {bad}")
        space[task_macro] = tune.grid_search(list(tasks))
    return space
