"""Gin registrations for `tasks/` (short names used in gin files and --gin bindings).

Synthetic analogs: `SyntheticObjects`, `SyntheticScenes`, `SyntheticFineGrained`,
`SyntheticAppearanceActions`, `SyntheticAppearanceActionsXL`, `SyntheticMotionActions`,
`SyntheticDepth`, `SyntheticCameraPose`, `SyntheticPointTracks`, `SyntheticBoxTracks`
(each with cache_dir, num_train, num_val, image_size, num_frames, seed, num_proc,
device ('cpu', 'cuda' or 'auto': where the splits render; part of the cache key), head_kwargs), and the pretraining streams `SyntheticPretrainClips` / `SyntheticPretrainImages`.
"""

import gin

from tasks.synthetic import builders, pretrain

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
    gin.external_configurable(builders.BUILDERS[_analog], _gin_name)

gin.external_configurable(pretrain.pretrain_clips, "SyntheticPretrainClips")
gin.external_configurable(pretrain.pretrain_images, "SyntheticPretrainImages")
