"""Gin registrations for `runners/` (short names used in gin files and --gin bindings).

  Probe               one probe run's settings (runners/trial.py)
  Sweep               one Ray Tune sweep's settings (runners/sweep.py)
  block_x_timestep, variants, scaling, backbones    search spaces (search_spaces/)
"""

import gin

import search_spaces
from runners import sweep, trial

gin.external_configurable(trial.Probe, "Probe")
gin.external_configurable(sweep.Sweep, "Sweep")
for _name, _fn in search_spaces.SPACES.items():
    gin.external_configurable(_fn, _name)
