"""Registers every gin configurable of the project, in one place, under short names.

Library code (`walt/`, `backbones/`, `readouts/`, `tasks/`, `probing/`, `pretraining/`) never
imports gin: its constructors and entry functions take plain Python arguments, and this module
wraps them with `gin.external_configurable` (t5x style). Importing it in a process (the CLI,
every Ray trial) makes all names available before any gin file is parsed.

Sections: settings and entry points; backbones (one line per backbone builder); the WALT model's
parts; readouts and task kinds; synthetic tasks; real tasks; pretraining; search spaces.
"""

import gin

import search_spaces
from backbones.build import build_backbone
from backbones.cogvideox import build_cogvideox
from backbones.dinov2 import build_dinov2
from backbones.ltx import build_ltx_video
from backbones.oracle import OracleBackbone
from backbones.pixart_latte import build_latte, build_pixart_alpha
from backbones.pixels import PixelsBackbone
from backbones.sd_unet import build_animatediff, build_sd15
from backbones.siglip import build_siglip
from backbones.videomae import build_videomae
from backbones.vjepa2 import build_vjepa2
from backbones.wan import build_wan
from probing.probe import Probe as _Probe
from readouts import optim
from readouts.linear import LinearReadout
from runners import settings
from runners.pretrain import Pretrain as _Pretrain
from pretraining.synthetic import SyntheticClips as _SyntheticClips
from tasks import kinds
from tasks.real import builders as real_builders
from tasks.synthetic import builders as synthetic_builders
from walt.noise import NoiseSchedule
from walt.tokenizer import Tokenizer
from walt.transformer import WALT

# ----------------------------------------------------------------------------- settings, entry points
# `Run`: output folder, seed, device of every command. `Probe`: one probe run's settings
# (probing/probe.py). `Pretrain`: every setting of `walt-probe pretrain`. (`Sweep` is below.)
Run = gin.external_configurable(settings.Run, "Run")
Probe = gin.external_configurable(_Probe, "Probe")
Pretrain = gin.external_configurable(_Pretrain, "Pretrain")

# ----------------------------------------------------------------------------- backbones
# One line per backbone builder: `backbone = @Name()` in gin/backbones/*.gin. A builder takes
# plain arguments and returns an object implementing backbones/base.py's Backbone.
#   Backbone: WALT (backbones/build.py): Backbone.size, .variant, .walt_checkpoint, ...;
#   --gin.Backbone.compile=True runs feature capture through torch.compile (same cache key).
#   OracleBackbone (backbones/oracle.py): the renderer's ground truth at the token grid, the
#   positive control (OracleBackbone.analog = 'depth', seed / image_size / num_frames = the
#   task's). PixelsBackbone (backbones/pixels.py): the floor, PixelsBackbone.mode = 'rgb' |
#   'latents'.
#   The library models (gin/backbones/external/*.gin, docs/backbones.md) under their builders'
#   names; diffusers / transformers are imported only when one is built.
BACKBONES = {
    "Backbone": build_backbone,
    "OracleBackbone": OracleBackbone,
    "PixelsBackbone": PixelsBackbone,
    "build_cogvideox": build_cogvideox,
    "build_wan": build_wan,
    "build_ltx_video": build_ltx_video,
    "build_pixart_alpha": build_pixart_alpha,
    "build_latte": build_latte,
    "build_sd15": build_sd15,
    "build_animatediff": build_animatediff,
    "build_dinov2": build_dinov2,
    "build_siglip": build_siglip,
    "build_videomae": build_videomae,
    "build_vjepa2": build_vjepa2,
}
for _name, _builder in BACKBONES.items():
    gin.external_configurable(_builder, _name)

# ----------------------------------------------------------------------------- the WALT model's parts
gin.external_configurable(Tokenizer, "Tokenizer", module="walt")
gin.external_configurable(Tokenizer.from_size, "TokenizerFromSize", module="walt")
gin.external_configurable(WALT, "WALT", module="walt")
gin.external_configurable(WALT.from_size, "WALTFromSize", module="walt")
gin.external_configurable(NoiseSchedule, "NoiseSchedule", module="walt")

# ----------------------------------------------------------------------------- readouts, task kinds
# Task kinds (task builders call them, or a gin file binds them with a `datasets` mapping) and
# the optimiser: `PaperOptimizer` (AdamW + warm-up cosine; `PaperOptimizer.warmup = 100` etc.).
gin.external_configurable(kinds.classification, "Classification")
gin.external_configurable(kinds.depth, "Depth")
gin.external_configurable(kinds.camera_pose, "CameraPose")
gin.external_configurable(kinds.point_tracks, "PointTracks")
gin.external_configurable(kinds.box_tracks, "BoxTracks")
gin.external_configurable(optim.paper_optimizer, "PaperOptimizer")
# Readout heads a task kind's `make_head` can be bound to (default: the kind's own head), e.g.
# `SyntheticObjects.make_head = @LinearReadout` and `LinearReadout.pool = 'mean'`.
gin.external_configurable(LinearReadout, "LinearReadout")

# ----------------------------------------------------------------------------- synthetic tasks
# Each with cache_dir, num_train, num_val, image_size, num_frames, seed, num_proc, device
# ('cpu', 'cuda' or 'auto': where the splits render; part of the cache key), head_kwargs.
SYNTHETIC_NAMES = {
    "objects": "SyntheticObjects",
    "scenes": "SyntheticScenes",
    "finegrained": "SyntheticFineGrained",
    "appearance": "SyntheticAppearanceActions",
    "appearance_xl": "SyntheticAppearanceActionsXL",
    "motion": "SyntheticMotionActions",
    "depth": "SyntheticDepth",
    "pose": "SyntheticCameraPose",
    "point_tracks": "SyntheticPointTracks",
    "box_tracks": "SyntheticBoxTracks",
}
for _analog, _gin_name in SYNTHETIC_NAMES.items():
    gin.external_configurable(synthetic_builders.BUILDERS[_analog], _gin_name)

# ----------------------------------------------------------------------------- real tasks
# Each name builds one real-dataset Task; its location argument (`root`, or `tapvid_pickle` and
# `kubric` for PointTracking) has no default, so gin reports it when a config leaves it unset.
# The configs in gin/tasks/real/ bind it to a required CAPS macro and bind `TASK = @Name()`.
REAL_NAMES = {
    "ImageNet": real_builders.imagenet,
    "Places365": real_builders.places365,
    "INat2018": real_builders.inat2018,
    "Kinetics400": real_builders.kinetics400,
    "Kinetics700": real_builders.kinetics700,
    "SSv2": real_builders.ssv2,
    "ScanNetDepth": real_builders.scannet_depth,
    "RealEstate10K": real_builders.realestate10k,
    "PointTracking": real_builders.point_tracking,
    "WaymoBoxes": real_builders.waymo_boxes,
}
for _name, _fn in REAL_NAMES.items():
    gin.external_configurable(_fn, _name, module="tasks.real")


# ----------------------------------------------------------------------------- pretraining
def task_videos(task, split: str = "train"):
    """The dataset of `split` of a Task (its items' 'video' is what pretraining reads)."""
    return task.split(split)


gin.external_configurable(task_videos, "TaskVideos")
gin.external_configurable(_SyntheticClips, "SyntheticClips")

# ----------------------------------------------------------------------------- sweeps
gin.external_configurable(settings.Sweep, "Sweep")
for _name, _fn in search_spaces.SPACES.items():
    gin.external_configurable(_fn, _name)
