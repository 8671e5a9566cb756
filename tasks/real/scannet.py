"""ScanNet monocular depth: scenes exported from `.sens` by ScanNet's SensReader.

Layout (docs/real_datasets.md): per scene
    <scene>/color/<i>.jpg          RGB, 1296 x 968
    <scene>/depth/<i>.png          uint16 millimetres, 640 x 480, 0 = no measurement
    <scene>/intrinsic/intrinsic_depth.txt   4 x 4 (the top-left 3 x 3 is K of the depth raster)
with the scenes either in `<root>/scans/` and listed by `<root>/scannetv2_<split>.txt` (the
official split files), or in `<root>/<split>/<scene>/`.

Clip (paper App. D.3): 17 consecutive exported frames, the first chosen at random in training
and frame 0 in evaluation. Colour is resized onto the depth raster (the two are registered by
SensReader up to that resize), then both are resized so the short side is `image_size` and
centre-cropped (depth with nearest neighbour so invalid pixels stay exactly 0). A scene with
fewer than 17 frames cannot give a clip: it is skipped and recorded in `dataset.skipped`.

Items: video uint8 (17, S, S, 3); depth float32 (17, S, S) metres, 0 = invalid;
intrinsics float32 (3, 3) pixel K of the S x S raster; index int64 ().
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torchvision.transforms.v2 import functional as F

from tasks.real.common import (DatasetFormatError, SkipLog, decode_image, read_depth_png,
                               require_dir, require_file, resize_short_crop, scale_intrinsics,
                               short_side_crop_geometry, to_chw, to_thwc, window_start)

MILLIMETRES_PER_METRE = 1000.0


def read_intrinsics(path: Path) -> np.ndarray:
    """A SensReader intrinsic file (4 x 4 or 3 x 3, whitespace separated) -> K float64 (3, 3)."""
    try:
        mat = np.loadtxt(path, dtype=np.float64)
    except ValueError as err:
        raise DatasetFormatError(f"{path}: not a whitespace-separated matrix ({err})") from err
    if mat.shape not in ((4, 4), (3, 3)):
        raise DatasetFormatError(f"{path}: shape {mat.shape}; expected a 4 x 4 or 3 x 3 matrix")
    return mat[:3, :3]


def scene_dirs(root: Path, split: str) -> list[Path]:
    """The scene folders of `split`: the official split list over scans/, or <root>/<split>/."""
    split_list = root / f"scannetv2_{split}.txt"
    if split_list.is_file():
        scans = require_dir(root / "scans", "ScanNet scans folder",
                            f"{split_list} lists scenes expected in {root / 'scans'}/<scene>")
        return [scans / name.strip() for name in split_list.read_text().splitlines() if name.strip()]
    split_dir = root / split
    if not split_dir.is_dir():
        raise DatasetFormatError(f"ScanNet split '{split}' not found: expected {split_list} "
                                 f"(with scenes in {root / 'scans'}) or the folder {split_dir}/<scene>")
    return sorted(p for p in split_dir.iterdir() if p.is_dir())


class ScanNetDepth(SkipLog):
    """17-frame ScanNet clips with metric depth; see the module docstring for the item keys."""

    def __init__(self, root: str | Path, split: str, *, image_size: int = 128,
                 num_frames: int = 17):
        root = require_dir(root, "ScanNet root", "Point the gin macro at the export folder.")
        self.split, self.train = split, split == "train"
        self.image_size, self.num_frames = image_size, num_frames
        self.scenes: list[tuple[Path, list[str]]] = []
        for scene in scene_dirs(root, split):
            if not (scene / "color").is_dir():
                self._skip(scene, "no color/ folder (scene not exported)")
                continue
            frames = sorted((p.stem for p in (scene / "color").glob("*.jpg")), key=_frame_key)
            if len(frames) < num_frames:
                self._skip(scene, f"{len(frames)} frames, fewer than the {num_frames} of a clip")
                continue
            self.scenes.append((scene, frames))
        if not self.scenes:
            raise DatasetFormatError(f"ScanNet '{split}' under {root}: no scene with "
                                     f"{num_frames} exported frames ({len(self.skipped)} skipped)")
        self._report_skips(f"scannet/{split}")

    def __len__(self) -> int:
        return len(self.scenes)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        scene, frames = self.scenes[i]
        start = window_start(len(frames), self.num_frames, "random" if self.train else "first")
        names = frames[start:start + self.num_frames]
        depth = []
        for name in names:
            path = require_file(scene / "depth" / f"{name}.png", "ScanNet depth frame",
                                f"expected a depth PNG for every color frame of {scene}")
            depth.append(read_depth_png(path))
        depth = np.stack(depth)                                                  # (T, h, w) mm
        h, w = depth.shape[1:]
        color = np.stack([decode_image(scene / "color" / f"{n}.jpg") for n in names])
        # Colour onto the depth raster first: K below is the depth camera's.
        color = F.resize(to_chw(color), [h, w], antialias=True)                  # (T, 3, h, w)
        k = read_intrinsics(require_file(scene / "intrinsic" / "intrinsic_depth.txt",
                                         "ScanNet depth intrinsics"))
        s = self.image_size
        video = resize_short_crop(color, s, s)
        depth_t = torch.from_numpy(depth.astype(np.float32) / MILLIMETRES_PER_METRE)
        depth_t = resize_short_crop(depth_t[:, None], s, s, nearest=True)[:, 0]
        return {"video": to_thwc(video), "depth": depth_t,
                "intrinsics": torch.from_numpy(scale_intrinsics(k, *short_side_crop_geometry(h, w, s, s))),
                "index": torch.tensor(i)}


def _frame_key(stem: str):
    # Exported frames are numbered 0, 1, ..., 10, ...: sort numerically, not as text.
    return (0, int(stem)) if stem.isdigit() else (1, stem)
