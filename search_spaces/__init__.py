"""Ray Tune search spaces: gin binding string -> tune spec. Imports only ray.tune.

A space is a dict whose keys are gin binding left-hand sides ('Probe.block', 'Backbone.variant',
a macro such as 'TASK') and whose values are Ray Tune specs (`tune.grid_search([...])`) or
constants. Values are Python literals, or strings starting with '@' / '%' for gin references
('@SyntheticObjects()'). A value that is a dict is a *bundle*: several bindings that vary
together (a model size with its checkpoint); its key only names the axis.

Spaces (each a function of plain arguments, registered in gin by runners/configurables.py):
  block_x_timestep   blocks x timesteps (x variants): Fig. 5 and the heatmaps
  variants           I-WALT vs V-WALT on every task: Fig. 1
  scaling            model sizes x variants: Fig. 7
  backbones          named backbones (each a bundle of bindings): Fig. 7 against other models
  backbone_grids     several backbones, each at its own block x noise grid: Fig. 5 / 7 across families
  seeds              repeats under readout seeds (Run.seed): seed noise
"""

from search_spaces.backbones import backbone_grids, backbones
from search_spaces.block_x_timestep import PAPER_TIMESTEPS, block_x_timestep
from search_spaces.scaling import scaling
from search_spaces.seeds import seeds
from search_spaces.variants import variants

SPACES = {"block_x_timestep": block_x_timestep, "variants": variants, "scaling": scaling,
          "backbones": backbones, "backbone_grids": backbone_grids, "seeds": seeds}

__all__ = ["SPACES", "PAPER_TIMESTEPS", "block_x_timestep", "variants", "scaling", "backbones", "backbone_grids", "seeds"]
