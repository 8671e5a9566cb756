"""Readers for the real evaluation datasets in their standard on-disk formats.

common.py (paths, errors, skips, images, windows, the train / val / test split contract, input
validation), video_io.py (PyAV / torchcodec decoding, segments of untrimmed videos),
transforms.py (torchvision v2 crops), images.py (ImageNet, Places365, iNat2018), videos.py
(Kinetics, SSv2), scannet.py, realestate10k.py, point_tracking.py (TAP-Vid, Kubric), waymo.py
(the v2 Parquet release), builders.py (each dataset as a Task). Layouts: docs/real_datasets.md.
"""
