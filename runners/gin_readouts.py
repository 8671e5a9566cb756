"""Gin registrations for `readouts/` and the task kinds (short names used in gin files and
--gin bindings).

Task kinds: `Classification`, `Depth`, `CameraPose`, `PointTracks`, `BoxTracks` (task
builders call them, or a gin file binds them directly with a `datasets` mapping).
Optimiser: `PaperOptimizer` (AdamW + warm-up cosine; `PaperOptimizer.warmup = 100` etc.).
"""

import gin

from readouts import optim
from tasks import kinds

gin.external_configurable(kinds.classification, "Classification")
gin.external_configurable(kinds.depth, "Depth")
gin.external_configurable(kinds.camera_pose, "CameraPose")
gin.external_configurable(kinds.point_tracks, "PointTracks")
gin.external_configurable(kinds.box_tracks, "BoxTracks")
gin.external_configurable(optim.paper_optimizer, "PaperOptimizer")
