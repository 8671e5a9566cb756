"""The ten real evaluation datasets as Tasks (the readers of tasks/real/ + tasks/kinds.py).

Each builder takes the dataset location (required) and the knobs a study changes, reads three
splits and returns a Task:

  test   the dataset's standard evaluation split (paper App. D: ImageNet val, Kinetics val,
         SSv2 validation, ScanNet val, RealEstate10K test, TAP-Vid, Waymo validation), what a
         study reports;
  train  the official training split minus 'val';
  val    a seeded, deterministic part of the official training split (`val_fraction` of its
         images / clips / scenes / sequences / segments, chosen by a keyed hash of each one's
         name with `split_seed`: tasks.real.common.carve_val), what a sweep selects on.

Frames of one scene, sequence or segment never straddle train and val.
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

from tasks.real.common import SPLITS


def skipped_counts(task: Task) -> dict[str, int]:
    """Split -> number of examples the reader left out (0 where it left none out)."""
    return {split: len(getattr(ds, "skipped", ())) for split, ds in task.datasets.items()}


def _image_task(name: str, root: str | Path, num_classes: int, image_size: int, layout: str,
                cache_dir: str | None, num_frames: int, head_kwargs: dict | None,
                val_fraction: float, split_seed: int) -> Task:
    datasets = {s: image_split(name, root, s, num_classes, image_size=image_size, layout=layout,
                               cache_dir=cache_dir, val_fraction=val_fraction,
                               split_seed=split_seed) for s in SPLITS}
    return kinds.classification(name, datasets, num_classes, image_task=True,
                                num_frames=num_frames, head_kwargs=head_kwargs)


def imagenet(root: str, *, image_size: int = 128, num_classes: int = 1000, layout: str = "auto",
             cache_dir: str | None = None, num_frames: int = 17, val_fraction: float = 0.01,
             split_seed: int = 0, head_kwargs: dict | None = None) -> Task:
    """ImageNet-1k [ImageNet]: imagefolder, Kaggle ILSVRC/Data/CLS-LOC, flat val + CSV, or parquet.

    test = the 50,000 validation images; val = 1 % of train (12,812 images)."""
    return _image_task("imagenet", root, num_classes, image_size, layout, cache_dir, num_frames,
                       head_kwargs, val_fraction, split_seed)


def places365(root: str, *, image_size: int = 128, num_classes: int = 365, layout: str = "auto",
              cache_dir: str | None = None, num_frames: int = 17, val_fraction: float = 0.01,
              split_seed: int = 0, head_kwargs: dict | None = None) -> Task:
    """Places365-Standard [Places365]: official lists over data_256 / data_large (torchvision's
    layout too), imagefolder or parquet. test = the 36,500 validation images."""
    return _image_task("places365", root, num_classes, image_size, layout, cache_dir, num_frames,
                       head_kwargs, val_fraction, split_seed)


def inat2018(root: str, *, image_size: int = 128, num_classes: int = 8142, layout: str = "auto",
             cache_dir: str | None = None, num_frames: int = 17, val_fraction: float = 0.01,
             split_seed: int = 0, head_kwargs: dict | None = None) -> Task:
    """iNaturalist 2018 [INat2018]: train2018.json / val2018.json over the image root, or parquet.
    test = the 24,426 validation images."""
    return _image_task("inat2018", root, num_classes, image_size, layout, cache_dir, num_frames,
                       head_kwargs, val_fraction, split_seed)


def _video_task(name: str, dataset: str, root: str | Path, num_classes: int | None,
                image_size: int, num_frames: int, stride: int | None, backend: str,
                head_kwargs: dict | None, val_fraction: float, split_seed: int) -> Task:
    datasets = {s: video_split(dataset, root, s, num_classes, image_size=image_size,
                               num_frames=num_frames, stride=stride, backend=backend,
                               val_fraction=val_fraction, split_seed=split_seed)
                for s in SPLITS}
    return kinds.classification(name, datasets, datasets["train"].num_classes, image_task=False,
                                num_frames=num_frames, head_kwargs=head_kwargs)


def kinetics400(root: str, *, image_size: int = 128, num_classes: int | None = 400,
                num_frames: int = 17, stride: int = 1, backend: str = "auto",
                val_fraction: float = 0.02, split_seed: int = 0,
                head_kwargs: dict | None = None) -> Task:
    """Kinetics-400 [Kinetics400]: clips + annotations/<split>.csv (or metadata.csv / class
    folders). test = the official validation clips; an untrimmed download is read only inside
    its [time_start, time_end] segment."""
    return _video_task("k400", "kinetics", root, num_classes, image_size, num_frames, stride,
                       backend, head_kwargs, val_fraction, split_seed)


def kinetics700(root: str, *, image_size: int = 128, num_classes: int | None = 700,
                num_frames: int = 17, stride: int = 1, backend: str = "auto",
                val_fraction: float = 0.02, split_seed: int = 0,
                head_kwargs: dict | None = None) -> Task:
    """Kinetics-700 [Kinetics700]: same layouts as Kinetics-400."""
    return _video_task("k700", "kinetics", root, num_classes, image_size, num_frames, stride,
                       backend, head_kwargs, val_fraction, split_seed)


def ssv2(root: str, *, image_size: int = 128, num_classes: int | None = 174,
         num_frames: int = 17, stride: int = 2, backend: str = "auto",
         val_fraction: float = 0.02, split_seed: int = 0,
         head_kwargs: dict | None = None) -> Task:
    """Something-Something v2 [SSv2]: labels.json, train.json / validation.json (at the root or
    under labels/), <id>.webm. test = the 24,777 validation videos."""
    return _video_task("ssv2", "ssv2", root, num_classes, image_size, num_frames, stride,
                       backend, head_kwargs, val_fraction, split_seed)


def scannet_depth(root: str, *, image_size: int = 128, num_frames: int = 17,
                  val_fraction: float = 0.1, split_seed: int = 0,
                  head_kwargs: dict | None = None) -> Task:
    """ScanNet depth [ScanNetDepth]: SensReader exports (Python or C++) or scannet_frames_25k.
    test = the official val scenes; val = 10 % of the training scenes."""
    datasets = {s: ScanNetDepth(root, s, image_size=image_size, num_frames=num_frames,
                                val_fraction=val_fraction, split_seed=split_seed)
                for s in SPLITS}
    return kinds.depth("scannet_depth", datasets, image_size=image_size, num_frames=num_frames,
                       head_kwargs=head_kwargs)


def realestate10k(root: str, *, image_size: int = 128, num_frames: int = 17, stride: int = 1,
                  translation_scale: float | str | None = None, frames_dir: str | None = None,
                  layout: str = "auto", allow_pickle: bool = False, val_fraction: float = 0.02,
                  split_seed: int = 0, head_kwargs: dict | None = None) -> Task:
    """RealEstate10K [RealEstate10K]: camera .txt files + frames; test = the official test split.

    frames_dir: where the extracted <sequence>/<timestamp>.* folders are, with '{split}' in it
    (e.g. '/data/re10k/frames/{split}'); None: <root>/frames/<split>.
    layout: 'auto' / 'files' (the above) or 'pixelsplat' (pixelSplat's <split>/*.torch chunks:
    pickles, read only with allow_pickle=True).
    """
    datasets = {s: RealEstate10K(root, s, image_size=image_size, num_frames=num_frames,
                                 stride=stride, translation_scale=translation_scale,
                                 frames_dir=frames_dir, layout=layout, allow_pickle=allow_pickle,
                                 val_fraction=val_fraction, split_seed=split_seed)
                for s in SPLITS}
    return kinds.camera_pose("realestate10k", datasets, head_kwargs=head_kwargs)


def point_tracking(tapvid_pickle: str, kubric: str, *, image_size: int = 128,
                   num_frames: int = 17, eval_stride: int = 4, num_points: int = 64,
                   val_fraction: float = 0.02, split_seed: int = 0,
                   head_kwargs: dict | None = None) -> Task:
    """Point tracking [PointTracking]: train on Kubric MOVi-E, test on TAP-Vid.

    tapvid_pickle: a TAP-Vid pickle (DAVIS style), the TAP-Vid-Kinetics shard folder, or a glob
    of shards; loaded with pickle, which can run code: only give files you trust.
    kubric: folder of .npz or a TAP-Vid-format pickle; val = `val_fraction` of its videos.
    """
    datasets = {s: KubricTracks(kubric, image_size=image_size, num_frames=num_frames,
                                num_points=num_points, split=s, val_fraction=val_fraction,
                                split_seed=split_seed) for s in ("train", "val")}
    datasets["test"] = TapVidEval(tapvid_pickle, image_size=image_size, num_frames=num_frames,
                                  stride=eval_stride, num_points=num_points)
    return kinds.point_tracks("point_tracks", datasets, image_size=image_size,
                              num_frames=num_frames, head_kwargs=head_kwargs)


def waymo_boxes(root: str, *, image_size: int = 128, num_frames: int = 17, max_boxes: int = 25,
                min_box_area: float = 0.005, layout: str = "auto", val_fraction: float = 0.1,
                split_seed: int = 0, head_kwargs: dict | None = None) -> Task:
    """Waymo Open 2-D boxes [WaymoBoxes]: the v2 release's Parquet (camera_image + camera_box),
    FRONT camera, or the converted layout. test = the 202 validation segments."""
    datasets = {s: WaymoBoxes(root, s, image_size=image_size, num_frames=num_frames,
                              max_boxes=max_boxes, min_box_area=min_box_area, layout=layout,
                              val_fraction=val_fraction, split_seed=split_seed) for s in SPLITS}
    return kinds.box_tracks("waymo_boxes", datasets, num_frames=num_frames,
                            head_kwargs=head_kwargs)
