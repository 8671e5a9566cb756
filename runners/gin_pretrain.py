"""Gin registrations for the pretraining runner (short names used in gin files and --gin bindings).

  Pretrain        runners.pretrain.Pretrain: every setting of `walt-probe pretrain` (stage, data,
                  optimisation, checkpoints, tokenizer / diffusion options)
  PretrainClips   tasks.synthetic.pretrain_clips: the synthetic pretraining stream (clips)
  TaskVideos      the videos of one split of any Task of tasks/ (e.g. a real dataset reader)
"""

import gin

from runners.pretrain import Pretrain
from tasks import synthetic


def task_videos(task, split: str = "train"):
    """The dataset of `split` of a Task (its items' 'video' is what pretraining reads)."""
    return task.split(split)


gin.external_configurable(Pretrain, "Pretrain")
gin.external_configurable(task_videos, "TaskVideos")
if hasattr(synthetic, "pretrain_clips"):
    gin.external_configurable(synthetic.pretrain_clips, "PretrainClips")
