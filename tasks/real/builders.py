"""The ten real evaluation datasets as Tasks (the readers of tasks/real/ + tasks/kinds.py).

Each builder takes the dataset location (required) and the knobs a study changes, reads both
splits (paper App. D: the original splits; 'val' is the evaluation split) and returns a Task.
runners/configurables.py registers them under the names in brackets; gin/tasks/real/ holds
one config per dataset. `image_size` is the side of the square raster the backbone sees (128
for the paper's WALT, 17 x 128 x 128 clips).

Examples left out while reading (Kinetics clips not on disk, scenes too short for a clip, ...)
are in `task.split(name).skipped`; `skipped_counts(task)` gives the numbers for a results table.
"""

from __future__ import annotations

from pathlib import Path

from tasks import kinds
from tasks.real.images import image_split
from tasks.real.point_tracking import KubricTracks, TapVidEval
from tasks.real.realestate10k import RealEstate10K
from tasks.real.scannet import ScanNetDepth
from tasks.real.videos import video_split
from tasks.real.waymo import WaymoBoxes
from tasks.task import Task

SPLITS = ("train", "val")


def skipped_counts(task: Task) -> dict[str, int]:
    """Split -> number of examples the reader left out (0 where it left none out)."""
    return {split: len(getattr(ds, "skipped", ())) for split, ds in task.datasets.items()}


def _image_task(name: str, root: str | Path, num_classes: int, image_size: int, layout: str,
                cache_dir: str | None, num_frames: int, head_kwargs: dict | None) -> Task:
    datasets = {s: image_split(name, root, s, num_classes, image_size=image_size, layout=layout,
                               cache_dir=cache_dir) for s in SPLITS}
    return kinds.classification(name, datasets, num_classes, image_task=True,
                                num_frames=num_frames, head_kwargs=head_kwargs)


def imagenet(root: str, *, image_size: int = 128, num_classes: int = 1000, layout: str = "auto",
             cache_dir: str | None = None, num_frames: int = 17,
             head_kwargs: dict | None = None) -> Task:
    """ImageNet-1k [ImageNet]: imagefolder, flat val + LOC_val_solution.csv, or HF parquet."""
    return _image_task("imagenet", root, num_classes, image_size, layout, cache_dir, num_frames,
                       head_kwargs)


def places365(root: str, *, image_size: int = 128, num_classes: int = 365, layout: str = "auto",
              cache_dir: str | None = None, num_frames: int = 17,
              head_kwargs: dict | None = None) -> Task:
    """Places365-Standard [Places365]: official lists over data_256/val_256, imagefolder or parquet."""
    return _image_task("places365", root, num_classes, image_size, layout, cache_dir, num_frames,
                       head_kwargs)


def inat2018(root: str, *, image_size: int = 128, num_classes: int = 8142, layout: str = "auto",
             cache_dir: str | None = None, num_frames: int = 17,
             head_kwargs: dict | None = None) -> Task:
    """iNaturalist 2018 [INat2018]: train2018.json / val2018.json over the image root, or parquet."""
    return _image_task("inat2018", root, num_classes, image_size, layout, cache_dir, num_frames,
                       head_kwargs)


def _video_task(name: str, dataset: str, root: str | Path, num_classes: int | None,
                image_size: int, num_frames: int, stride: int | None, backend: str,
                head_kwargs: dict | None) -> Task:
    datasets = {s: video_split(dataset, root, s, num_classes, image_size=image_size,
                               num_frames=num_frames, stride=stride, backend=backend)
                for s in SPLITS}
    return kinds.classification(name, datasets, datasets["train"].num_classes, image_task=False, num_frames=num_frames,
                                head_kwargs=head_kwargs)


def kinetics400(root: str, *, image_size: int = 128, num_classes: int | None = 400,
                num_frames: int = 17, stride: int = 1, backend: str = "auto",
                head_kwargs: dict | None = None) -> Task:
    """Kinetics-400 [Kinetics400]: clips + annotations/<split>.csv (or metadata.csv / class folders)."""
    return _video_task("k400", "kinetics", root, num_classes, image_size, num_frames, stride,
                       backend, head_kwargs)


def kinetics700(root: str, *, image_size: int = 128, num_classes: int | None = 700,
                num_frames: int = 17, stride: int = 1, backend: str = "auto",
                head_kwargs: dict | None = None) -> Task:
    """Kinetics-700 [Kinetics700]: same layouts as Kinetics-400."""
    return _video_task("k700", "kinetics", root, num_classes, image_size, num_frames, stride,
                       backend, head_kwargs)


def ssv2(root: str, *, image_size: int = 128, num_classes: int | None = 174,
         num_frames: int = 17, stride: int = 2, backend: str = "auto",
         head_kwargs: dict | None = None) -> Task:
    """Something-Something v2 [SSv2]: labels.json, train.json / validation.json, <id>.webm."""
    return _video_task("ssv2", "ssv2", root, num_classes, image_size, num_frames, stride,
                       backend, head_kwargs)


def scannet_depth(root: str, *, image_size: int = 128, num_frames: int = 17,
                  head_kwargs: dict | None = None) -> Task:
    """ScanNet depth [ScanNetDepth]: SensReader exports, 17 consecutive frames."""
    datasets = {s: ScanNetDepth(root, s, image_size=image_size, num_frames=num_frames)
                for s in SPLITS}
    return kinds.depth("scannet_depth", datasets, image_size=image_size, num_frames=num_frames,
                       head_kwargs=head_kwargs)


def realestate10k(root: str, *, image_size: int = 128, num_frames: int = 17, stride: int = 1,
                  translation_scale: float | str | None = None, frames_dir: str | None = None,
                  head_kwargs: dict | None = None) -> Task:
    """RealEstate10K [RealEstate10K]: camera .txt files + frames; evaluation on 'test'.

    frames_dir: where the extracted <sequence>/<timestamp>.* folders are, with '{split}' in it
    (e.g. '/data/re10k/frames/{split}'); None: <root>/frames/<split>.
    """
    datasets = {s: RealEstate10K(root, s, image_size=image_size, num_frames=num_frames,
                                 stride=stride, translation_scale=translation_scale,
                                 frames_dir=frames_dir)
                for s in SPLITS}
    return kinds.camera_pose("realestate10k", datasets, head_kwargs=head_kwargs)


def point_tracking(tapvid_pickle: str, kubric: str, *, image_size: int = 128,
                   num_frames: int = 17, eval_stride: int = 4, num_points: int = 64,
                   head_kwargs: dict | None = None) -> Task:
    """Point tracking [PointTracking]: train on Kubric MOVi-E, evaluate on a TAP-Vid pickle.

    tapvid_pickle: the evaluation pickle (Perception Test / DAVIS style); loaded with pickle,
    which can run code: only give a file you trust. kubric: folder of .npz or a TAP-Vid pickle.
    """
    datasets = {"train": KubricTracks(kubric, image_size=image_size, num_frames=num_frames,
                                      num_points=num_points),
                "val": TapVidEval(tapvid_pickle, image_size=image_size, num_frames=num_frames,
                                  stride=eval_stride, num_points=num_points)}
    return kinds.point_tracks("point_tracks", datasets, image_size=image_size,
                              num_frames=num_frames, head_kwargs=head_kwargs)


def waymo_boxes(root: str, *, image_size: int = 128, num_frames: int = 17, max_boxes: int = 25,
                min_box_area: float = 0.005, head_kwargs: dict | None = None) -> Task:
    """Waymo Open 2-D boxes [WaymoBoxes]: the converted layout (frames + per-frame box JSON)."""
    datasets = {s: WaymoBoxes(root, s, image_size=image_size, num_frames=num_frames,
                              max_boxes=max_boxes, min_box_area=min_box_area) for s in SPLITS}
    return kinds.box_tracks("waymo_boxes", datasets, num_frames=num_frames,
                            head_kwargs=head_kwargs)
