"""Gin registrations for the pretraining runner (short names used in gin files and --gin bindings).

  Pretrain        runners.pretrain.Pretrain: every setting of `walt-probe pretrain` (stage, data,
                  optimisation, checkpoints, tokenizer / diffusion options)
  SyntheticClips  runners.pretrain_synthetic.SyntheticClips: generic clips of the synthetic world
  TaskVideos      the videos of one split of any Task of tasks/ (e.g. a real dataset reader)
"""

import gin

from runners.pretrain import Pretrain
from runners.pretrain_synthetic import SyntheticClips


def task_videos(task, split: str = "train"):
    """The dataset of `split` of a Task (its items' 'video' is what pretraining reads)."""
    return task.split(split)


PretrainConfigurable = gin.external_configurable(Pretrain, "Pretrain")
gin.external_configurable(task_videos, "TaskVideos")
gin.external_configurable(SyntheticClips, "SyntheticClips")
