"""Gin registrations for `tasks/real/` (short names used in gin files and --gin bindings).

Each name builds one real-dataset Task; its location argument (`root`, or `tapvid_pickle` and
`kubric` for PointTracking) has no default, so gin reports it when a config leaves it unset.
The configs in gin/tasks/real/ bind it to a required CAPS macro and bind `TASK = @Name()`.
"""

import gin

from tasks.real import builders

for _fn, _name in [
    (builders.imagenet, "ImageNet"),
    (builders.places365, "Places365"),
    (builders.inat2018, "INat2018"),
    (builders.kinetics400, "Kinetics400"),
    (builders.kinetics700, "Kinetics700"),
    (builders.ssv2, "SSv2"),
    (builders.scannet_depth, "ScanNetDepth"),
    (builders.realestate10k, "RealEstate10K"),
    (builders.point_tracking, "PointTracking"),
    (builders.waymo_boxes, "WaymoBoxes"),
]:
    gin.external_configurable(_fn, _name, module="tasks.real")
