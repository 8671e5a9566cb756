"""ScanNet monocular depth: scenes exported from `.sens`, in any of the three common layouts.

Per scene (docs/real_datasets.md has the trees), recognised by what the scene folder holds:

* 'python'  ScanNet's SensReader/python/reader.py export:
                <scene>/color/<i>.jpg   <scene>/depth/<i>.png   <scene>/intrinsic/intrinsic_depth.txt
* 'cpp'     ScanNet's C++ SensReader (`sens <file>.sens <out>`, SensReader/src/sensorData.h
            saveToImages, the '7-scenes format'):
                <scene>/frame-000000.color.jpg   <scene>/frame-000000.depth.pgm (P5, 16-bit,
                big-endian)   <scene>/frame-000000.pose.txt   <scene>/_info.txt
            (m_calibrationDepthIntrinsic = 16 numbers, row-major 4 x 4; m_depthShift = units
            per metre, 1000 in ScanNet)
* 'frames_25k'  the 2-D benchmark subset scannet_frames_25k (every 100th frame):
                <scene>/color/000000.jpg   <scene>/depth/000000.png   <scene>/intrinsics_depth.txt
            (intrinsics at the scene root). Its frames are 100 apart (about 3.3 s at 30 Hz),
            so a 17-frame clip spans ~55 s of the scan, not a video clip; it is read, and a
            warning says so once.

Depth: uint16 with 0 = no measurement, millimetres (the C++ export: units of 1 / m_depthShift m).
Scenes: `<root>/scannetv2_<split>.txt` (the official split lists) naming folders in `scans/`,
`scannet_frames_25k/` or the root; else `<root>/<split>/<scene>/`. Splits (common.SPLITS):
'test' is the official val scenes; 'train' / 'val' partition the official train scenes by scene
(never frames of one scene on both sides).

Clip (paper App. D.3): 17 consecutive exported frames, the first chosen at random in training
and frame 0 otherwise. Colour is resized onto the depth raster (the two are registered by
SensReader up to that resize), then both are resized so the short side is `image_size` and
centre-cropped (depth with nearest neighbour so invalid pixels stay exactly 0). A scene with
fewer than 17 frames cannot give a clip: it is skipped and recorded in `dataset.skipped`.

Items: video uint8 (17, S, S, 3); depth float32 (17, S, S) metres, 0 = invalid;
intrinsics float32 (3, 3) pixel K of the S x S raster; index int64 ().
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import torch
from einops import rearrange
from torchvision.transforms.v2 import functional as F

from tasks.real.common import (read_json, read_text, DatasetFormatError, SkipLog, carve_val, check_split, decode_image,
                               describe_dir, read_depth_png, require_dir, require_file,
                               resize_short_crop, scale_intrinsics, short_side_crop_geometry,
                               to_chw, to_thwc, window_start)

log = logging.getLogger("tasks.real")
MILLIMETRES_PER_METRE = 1000.0
SCENE_FOLDERS = ("scans", "scannet_frames_25k", ".")


def read_intrinsics(path: Path) -> np.ndarray:
    """A SensReader intrinsic file (4 x 4 or 3 x 3, whitespace separated) -> K float64 (3, 3)."""
    try:
        mat = np.loadtxt(path, dtype=np.float64)
    except ValueError as err:
        raise DatasetFormatError(f"{path}: not a whitespace-separated matrix ({err})") from err
    if mat.shape not in ((4, 4), (3, 3)):
        raise DatasetFormatError(f"{path}: shape {mat.shape}; expected a 4 x 4 or 3 x 3 matrix")
    return mat[:3, :3]


def read_info_txt(path: Path) -> tuple[np.ndarray, float]:
    """The C++ SensReader's _info.txt -> (depth K float64 (3, 3), depth units per metre)."""
    fields = {}
    for line in read_text(path).splitlines():
        if "=" in line:
            key, value = line.split("=", 1)
            fields[key.strip()] = value.split()
    try:
        k = rearrange(np.asarray([float(v) for v in fields["m_calibrationDepthIntrinsic"]]),
                      "(r c) -> r c", r=4, c=4)         # mat4f is stored row-major
        shift = float(fields["m_depthShift"][0])
    except (KeyError, ValueError, IndexError) as err:
        raise DatasetFormatError(f"{path}: expected 'm_calibrationDepthIntrinsic = <16 numbers>' "
                                 f"and 'm_depthShift = <units per metre>' as the C++ SensReader "
                                 f"writes them ({type(err).__name__}: {err})") from err
    if shift <= 0:
        raise DatasetFormatError(f"{path}: m_depthShift = {shift}; expected units per metre (1000)")
    return k[:3, :3], shift


@dataclasses.dataclass
class Scene:
    """One exported scene: frame names in order, where each frame's files are, its depth K."""

    folder: Path
    layout: str            # 'python', 'cpp' or 'frames_25k'
    frames: list[str]

    def color(self, name: str) -> Path:
        return (self.folder / f"frame-{name}.color.jpg" if self.layout == "cpp"
                else self.folder / "color" / f"{name}.jpg")

    def depth(self, name: str) -> Path:
        return (self.folder / f"frame-{name}.depth.pgm" if self.layout == "cpp"
                else self.folder / "depth" / f"{name}.png")

    def intrinsics(self) -> tuple[np.ndarray, float]:
        """(depth-raster K (3, 3), depth units per metre)."""
        if self.layout == "cpp":
            return read_info_txt(require_file(self.folder / "_info.txt", "ScanNet _info.txt"))
        path = (self.folder / "intrinsics_depth.txt" if self.layout == "frames_25k"
                else self.folder / "intrinsic" / "intrinsic_depth.txt")
        return read_intrinsics(require_file(path, "ScanNet depth intrinsics")), MILLIMETRES_PER_METRE


def detect_scene(folder: Path) -> Scene | None:
    """The scene at `folder` in whichever export layout it has; None when it has no frames."""
    cpp = sorted(folder.glob("frame-*.color.jpg"))
    if cpp:
        names = [p.name[len("frame-"):-len(".color.jpg")] for p in cpp]
        return Scene(folder, "cpp", sorted(names, key=_frame_key))
    if (folder / "color").is_dir():
        names = sorted((p.stem for p in (folder / "color").glob("*.jpg")), key=_frame_key)
        if (folder / "intrinsics_depth.txt").is_file() and not (folder / "intrinsic").is_dir():
            return Scene(folder, "frames_25k", names)
        return Scene(folder, "python", names)
    return None


def scene_dirs(root: Path, official: str) -> list[Path]:
    """The scene folders of the official split ('train' or 'val')."""
    split_list = root / f"scannetv2_{official}.txt"
    if split_list.is_file():
        names = [n.strip() for n in read_text(split_list).splitlines() if n.strip()]
        base = next((root / f for f in SCENE_FOLDERS if names and (root / f / names[0]).is_dir()), None)
        if base is None:
            raise DatasetFormatError(
                f"{split_list} lists scenes such as '{names[0] if names else '?'}', expected in "
                f"{root}/scans/, {root}/scannet_frames_25k/ or {root}/ (found: {describe_dir(root)})")
        return [base / n for n in names]
    split_dir = root / official
    if not split_dir.is_dir():
        raise DatasetFormatError(
            f"ScanNet split '{official}' not found under {root} (found: {describe_dir(root)}); "
            f"expected {split_list} with the scenes in scans/ or scannet_frames_25k/, or the "
            f"folder {split_dir}/<scene>")
    return sorted(p for p in split_dir.iterdir() if p.is_dir())


class ScanNetDepth(SkipLog):
    """17-frame ScanNet clips with metric depth; see the module docstring for the item keys."""

    def __init__(self, root: str | Path, split: str, *, image_size: int = 128,
                 num_frames: int = 17, val_fraction: float = 0.1, split_seed: int = 0):
        root = require_dir(root, "ScanNet root", "Point the gin macro at the export folder.")
        official = {"train": "train", "val": "train", "test": "val"}[check_split(split, "ScanNet")]
        self.split, self.train = split, split == "train"
        self.image_size, self.num_frames = image_size, num_frames
        folders = scene_dirs(root, official)
        if split != "test":
            folders = carve_val(folders, [f.name for f in folders], split, val_fraction=val_fraction,
                                seed=split_seed, what=f"ScanNet at {root}")
        self.scenes: list[Scene] = []
        for folder in folders:
            scene = detect_scene(folder) if folder.is_dir() else None
            if scene is None:
                self._skip(folder, "no exported frames (expected color/<i>.jpg or "
                                   "frame-XXXXXX.color.jpg; scene not exported)")
                continue
            if len(scene.frames) < num_frames:
                self._skip(folder, f"{len(scene.frames)} frames, fewer than the {num_frames} of a clip")
                continue
            self.scenes.append(scene)
        if not self.scenes:
            raise DatasetFormatError(f"ScanNet '{split}' under {root}: no scene with "
                                     f"{num_frames} exported frames ({len(self.skipped)} skipped)")
        if any(s.layout == "frames_25k" for s in self.scenes):
            log.warning("ScanNet at %s: scannet_frames_25k keeps every 100th frame, so a %d-frame "
                        "clip spans ~%d s of the scan rather than %.1f s of video",
                        root, num_frames, round(num_frames * 100 / 30), num_frames / 30)
        self._report_skips(f"scannet/{split}")

    def __len__(self) -> int:
        return len(self.scenes)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        scene = self.scenes[i]
        start = window_start(len(scene.frames), self.num_frames, "random" if self.train else "first")
        names = scene.frames[start:start + self.num_frames]
        k, units_per_metre = scene.intrinsics()
        depth = np.stack([read_depth_png(require_file(scene.depth(n), "ScanNet depth frame",
                                                      f"expected a depth image for every colour "
                                                      f"frame of {scene.folder}"))
                          for n in names])                                          # (T, h, w)
        h, w = depth.shape[1:]
        color = np.stack([decode_image(scene.color(n)) for n in names])
        # Colour onto the depth raster first: K below is the depth camera's.
        color = F.resize(to_chw(color), [h, w], antialias=True)                  # (T, 3, h, w)
        s = self.image_size
        video = resize_short_crop(color, s, s)
        depth_t = torch.from_numpy(depth.astype(np.float32) / np.float32(units_per_metre))
        depth_t = resize_short_crop(depth_t[:, None], s, s, nearest=True)[:, 0]
        return {"video": to_thwc(video), "depth": depth_t,
                "intrinsics": torch.from_numpy(scale_intrinsics(k, *short_side_crop_geometry(h, w, s, s))),
                "index": torch.tensor(i)}


def _frame_key(stem: str):
    # Exported frames are numbered 0, 1, ..., 10, ...: sort numerically, not as text.
    return (0, int(stem)) if stem.isdigit() else (1, stem)
