"""Readers for the real evaluation datasets in their standard on-disk formats.

common.py (paths, errors, skips, images, windows), video_io.py (PyAV / torchcodec decoding),
transforms.py (torchvision v2 crops), images.py (ImageNet, Places365, iNat2018), videos.py
(Kinetics, SSv2), scannet.py, realestate10k.py, point_tracking.py (TAP-Vid, Kubric), waymo.py,
builders.py (each dataset as a Task). Layouts: docs/real_datasets.md.
"""
