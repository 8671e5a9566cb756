"""RealEstate10K relative camera pose: the release's camera files plus extracted frames, or
pixelSplat's .torch chunks when the user asks for them.

Camera file `<root>/<split>/<sequence>.txt` (the official release; official splits 'train' and
'test'): line 1 is the YouTube URL, then one line per frame with 19 numbers
    timestamp_us  fx fy cx cy  0 0  r00 r01 r02 t0  r10 r11 r12 t1  r20 r21 r22 t2
where the intrinsics are normalised by the image width (fx, cx) and height (fy, cy) and the
3 x 4 matrix maps world points into the camera (world-to-camera, OpenCV axes: x right, y down,
z forward). Frames: `<root>/frames/<split>/<sequence>/<timestamp_us>.{png,jpg}` (also accepted:
`<root>/<split>/<sequence>/<timestamp_us>.*`). Timestamps must increase line by line.

pixelSplat chunks (layout='pixelsplat', allow_pickle=True; dcharatan/pixelsplat
src/dataset/dataset_re10k.py reads them): `<root>/<split>/*.torch`, each a torch-saved list of
{key, url, timestamps (N,), cameras (N, 18) = fx fy cx cy 0 0 + the 12 world-to-camera numbers,
images: N 1-D uint8 tensors of JPEG bytes (360 x 640)}, and `<root>/<split>/index.json`
{key: chunk file}. The chunks are pickles: they are never opened unless allow_pickle=True, and
then through torch's restricted loader (weights_only=True). A root that holds only chunks is
refused with that instruction.

Splits (common.SPLITS): 'test' is the official test split; 'train' / 'val' partition the
official train sequences by sequence name.

Clip: `num_frames` camera lines at `stride`, starting at a random line in training and at the
first in evaluation; frames resized (short side `image_size`) and centre-cropped.

Target (tasks/task.py): pose = inv(cam_to_world_first) @ cam_to_world_last
                             = w2c_first @ inv(w2c_last), a (3, 4) [R | t].
Translation units: RealEstate10K's poses come from SfM/SLAM, so their scale is arbitrary per
sequence. `translation_scale` documents the choice: None keeps SfM units; a float multiplies every
translation; a path to a JSON {sequence: metres_per_unit} (e.g. from a metric depth model)
gives metric translations. Sequences listed without frames on disk are skipped (recorded in
`dataset.skipped`), as are sequences shorter than the clip.

Items: video uint8 (T, S, S, 3); pose float32 (3, 4); intrinsics float32 (3, 3) pixel K of the
first frame on the S x S raster; index int64 ().
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from einops import rearrange

from tasks.real.common import (read_json, read_text, IMAGE_EXTENSIONS, DatasetFormatError, SkipLog, carve_val,
                               check_monotone, check_split, decode_image, describe_dir,
                               require_dir, resize_short_crop, scale_intrinsics,
                               short_side_crop_geometry, to_chw, to_thwc, window_indices,
                               window_start)


def read_camera_file(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A RealEstate10K camera file -> (timestamps int64 (N,), intrinsics float64 (N, 4)
    normalised [fx, fy, cx, cy], world_to_camera float64 (N, 4, 4))."""
    lines = [ln for ln in read_text(path).splitlines()[1:] if ln.strip()]
    if not lines:
        raise DatasetFormatError(f"{path}: no camera lines after the URL line")
    rows = []
    for lineno, line in enumerate(lines, 2):
        parts = line.split()
        if len(parts) != 19:
            raise DatasetFormatError(f"{path}:{lineno}: {len(parts)} numbers; expected 19 "
                                     f"(timestamp, fx fy cx cy, 0 0, 12 of a 3x4 world-to-camera)")
        rows.append([float(p) for p in parts])
    arr = np.asarray(rows, dtype=np.float64)
    check_monotone(arr[:, 0], str(path), "timestamps (column 1)")
    w2c = np.tile(np.eye(4), (len(arr), 1, 1))
    w2c[:, :3, :4] = rearrange(arr[:, 7:], "n (r c) -> n r c", r=3, c=4)  # row-major 3 x 4 per line
    return arr[:, 0].astype(np.int64), arr[:, 1:5], w2c


def relative_pose(w2c_first: np.ndarray, w2c_last: np.ndarray) -> np.ndarray:
    """(3, 4) pose of the last camera in the first camera's frame (tasks/task.py convention).

    inv(c2w_first) @ c2w_last = w2c_first @ inv(w2c_last): maps last-camera coordinates into
    first-camera coordinates.
    """
    return (w2c_first @ np.linalg.inv(w2c_last))[:3, :4]


def _pixelsplat_index(split_dir: Path) -> list[tuple[str, Path]]:
    """(sequence key, chunk file) of pixelSplat's <split>/index.json, in key order."""
    index_file = split_dir / "index.json"
    if not index_file.is_file():
        chunks = sorted(split_dir.glob("*.torch"))
        raise DatasetFormatError(f"{split_dir}: {len(chunks)} .torch chunks but no index.json "
                                 f"(key -> chunk file, written by pixelSplat's converter); "
                                 f"expected {index_file}")
    try:
        index = read_json(index_file)
    except json.JSONDecodeError as err:
        raise DatasetFormatError(f"{index_file}: not JSON ({err}); expected {{key: chunk}}") from err
    return sorted((str(k), split_dir / v) for k, v in index.items())


def load_pixelsplat_chunk(path: Path) -> dict[str, dict]:
    """A pixelSplat RealEstate10K chunk: key -> {timestamps (N,), cameras (N, 18), images [N]}.

    The chunk is a torch pickle (a list of dicts). It is loaded with torch's restricted
    unpickler (weights_only=True: tensors, lists, dicts and strings only), so a chunk that asks
    for anything else is refused instead of run.
    """
    try:
        chunk = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - UnpicklingError, RuntimeError, EOFError, ...
        raise DatasetFormatError(f"{path}: not a pixelSplat RealEstate10K chunk that torch's "
                                 f"restricted loader accepts ({type(err).__name__}: {err})") from err
    if not isinstance(chunk, list):
        raise DatasetFormatError(f"{path}: holds a {type(chunk).__name__}; expected a list of "
                                 f"examples {{key, url, timestamps, cameras, images}}")
    out = {}
    for n, ex in enumerate(chunk):
        if not isinstance(ex, dict) or not {"key", "timestamps", "cameras", "images"} <= set(ex):
            raise DatasetFormatError(f"{path}: example {n} lacks key/timestamps/cameras/images")
        cams = torch.as_tensor(ex["cameras"]).double().numpy()
        if cams.ndim != 2 or cams.shape[1] != 18 or len(ex["images"]) != len(cams):
            raise DatasetFormatError(f"{path}: example {n} ('{ex['key']}') has cameras "
                                     f"{tuple(cams.shape)} and {len(ex['images'])} images; expected "
                                     f"(N, 18) = fx fy cx cy 0 0 + 3 x 4 world-to-camera, N images")
        timestamps = torch.as_tensor(ex["timestamps"]).numpy().astype(np.int64)
        check_monotone(timestamps, f"{path} example '{ex['key']}'")
        w2c = np.tile(np.eye(4), (len(cams), 1, 1))
        w2c[:, :3, :4] = rearrange(cams[:, 6:], "n (r c) -> n r c", r=3, c=4)   # row-major 3 x 4
        out[str(ex["key"])] = {"timestamps": timestamps, "intrinsics": cams[:, :4], "w2c": w2c,
                               "images": ex["images"]}
    return out


class RealEstate10K(SkipLog):
    """Clips with the relative pose first -> last; see the module docstring for the item keys.

    layout: 'auto' (camera .txt files), 'files' (the same) or 'pixelsplat' (pixelSplat's
    <root>/<split>/*.torch chunks + index.json; pickles, so they are read only when
    allow_pickle=True, and then through torch's restricted loader).
    val_fraction, split_seed: the share of official training sequences held out as 'val'.
    """

    def __init__(self, root: str | Path, split: str, *, image_size: int = 128,
                 num_frames: int = 17, stride: int = 1,
                 translation_scale: float | str | None = None, frames_dir: str | None = None,
                 layout: str = "auto", allow_pickle: bool = False, val_fraction: float = 0.02,
                 split_seed: int = 0):
        root = require_dir(root, "RealEstate10K root", "Point the gin macro at the dataset folder.")
        official = {"train": "train", "val": "train", "test": "test"}[check_split(split, "RealEstate10K")]
        self.train, self.image_size = split == "train", image_size
        self.num_frames, self.stride = num_frames, stride
        self.scales = self._load_scales(translation_scale)
        has_txt = (root / official).is_dir() and any((root / official).glob("*.txt"))
        has_chunks = (root / official).is_dir() and any((root / official).glob("*.torch"))
        if layout == "auto":
            if has_chunks and not has_txt:
                raise DatasetFormatError(
                    f"RealEstate10K at {root}: found pixelSplat .torch chunks in {root / official}, "
                    f"not the camera .txt files of the release. The chunks are Python pickles: to "
                    f"read them set RealEstate10K.layout = 'pixelsplat' and "
                    f"RealEstate10K.allow_pickle = True (only for files from a source you trust)")
            layout = "files"
        if layout == "pixelsplat":
            if not allow_pickle:
                raise DatasetFormatError(
                    f"RealEstate10K layout 'pixelsplat' reads .torch chunks, which are pickles "
                    f"(unpickling can run code); set RealEstate10K.allow_pickle = True to read "
                    f"{root / official} (they are then loaded with torch's restricted unpickler)")
            entries = _pixelsplat_index(require_dir(root / official, f"RealEstate10K split '{official}'",
                                                    f"expected pixelSplat chunks {root / official}/*.torch"))
        elif layout == "files":
            entries = self._index_files(root, official, frames_dir)
        else:
            raise ValueError(f"unknown RealEstate10K layout '{layout}'; expected 'auto', 'files' "
                             f"or 'pixelsplat'")
        if split != "test":
            entries = carve_val(entries, [e[0] for e in entries], split, val_fraction=val_fraction,
                                seed=split_seed, what=f"RealEstate10K at {root}")
        for entry in entries:
            if isinstance(self.scales, dict) and entry[0] not in self.scales:
                raise DatasetFormatError(f"translation_scale file has no entry for sequence "
                                         f"'{entry[0]}'; expected one per sequence")
        self.layout, self.sequences = layout, entries
        if not self.sequences:
            raise DatasetFormatError(f"RealEstate10K '{split}' under {root}: no sequence with "
                                     f"frames on disk ({len(self.skipped)} skipped)")
        self._chunk_cache: tuple[Path, dict] | None = None
        self._report_skips(f"realestate10k/{split}")

    def _index_files(self, root: Path, official: str, frames_dir: str | None) -> list[tuple]:
        cam_dir = require_dir(root / official, f"RealEstate10K split '{official}'",
                              f"expected the camera files {root / official}/<sequence>.txt "
                              f"(found in {root}: {describe_dir(root)})")
        frames_root = Path(frames_dir.format(split=official)) if frames_dir else root / "frames" / official
        span = (self.num_frames - 1) * self.stride + 1
        entries = []
        for cam_file in sorted(cam_dir.glob("*.txt")):
            seq = cam_file.stem
            frame_dir = next((d for d in (frames_root / seq, cam_dir / seq) if d.is_dir()), None)
            if frame_dir is None:
                self._skip(cam_file, f"no extracted frames in {frames_root / seq}")
                continue
            timestamps, intr, w2c = read_camera_file(cam_file)
            if len(timestamps) < span:
                self._skip(cam_file, f"{len(timestamps)} frames, fewer than the clip's {span}")
                continue
            entries.append((seq, frame_dir, timestamps, intr, w2c))
        return entries

    @staticmethod
    def _load_scales(spec: float | str | None):
        if spec is None or isinstance(spec, (int, float)):
            return 1.0 if spec is None else float(spec)
        path = Path(spec)
        if not path.is_file():
            raise DatasetFormatError(f"translation_scale: file not found: {path} (expected a JSON "
                                     f"object {{sequence: metres_per_unit}})")
        return {k: float(v) for k, v in read_json(path).items()}

    def __len__(self) -> int:
        return len(self.sequences)

    def _frame_path(self, frame_dir: Path, ts: int) -> Path:
        for ext in IMAGE_EXTENSIONS:
            if (frame_dir / f"{ts}{ext}").is_file():
                return frame_dir / f"{ts}{ext}"
        raise DatasetFormatError(f"frame {frame_dir}/{ts}.png (or .jpg) not found: every camera "
                                 f"line needs its extracted frame, named by the timestamp")

    def _sequence(self, i: int):
        """(name, timestamps (N,), normalised intrinsics (N, 4), w2c (N, 4, 4), frame loader)."""
        if self.layout == "files":
            seq, frame_dir, timestamps, intr, w2c = self.sequences[i]
            return seq, timestamps, intr, w2c, lambda j: decode_image(self._frame_path(frame_dir, timestamps[j]))
        seq, chunk_path = self.sequences[i]
        if self._chunk_cache is None or self._chunk_cache[0] != chunk_path:
            # Consecutive items mostly share a chunk (index order): keep the last one loaded.
            self._chunk_cache = (chunk_path, load_pixelsplat_chunk(chunk_path))
        ex = self._chunk_cache[1].get(seq)
        if ex is None:
            raise DatasetFormatError(f"{chunk_path}: index.json places '{seq}' here but the chunk "
                                     f"has no such key; rebuild the index")
        images = ex["images"]
        return (seq, ex["timestamps"], ex["intrinsics"], ex["w2c"],
                lambda j: decode_image(torch.as_tensor(images[j]).numpy().tobytes(),
                                       source=f"{chunk_path} '{seq}' image {j}"))

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        seq, timestamps, intr, w2c, frame = self._sequence(i)
        span = (self.num_frames - 1) * self.stride + 1
        start = window_start(len(timestamps), span, "random" if self.train else "first")
        # pixelSplat chunks are not opened at indexing, so a short sequence repeats its last
        # camera here (window_indices) instead of being skipped.
        lines = window_indices(start, self.num_frames, self.stride, len(timestamps))
        frames = np.stack([frame(j) for j in lines])
        h, w = frames.shape[1:3]
        s = self.image_size
        video = resize_short_crop(to_chw(frames), s, s)
        pose = relative_pose(w2c[lines[0]], w2c[lines[-1]])
        scale = self.scales[seq] if isinstance(self.scales, dict) else self.scales
        pose[:, 3] *= scale
        fx, fy, cx, cy = intr[lines[0]]
        k = np.array([[fx * w, 0.0, cx * w], [0.0, fy * h, cy * h], [0.0, 0.0, 1.0]])
        return {"video": to_thwc(video), "pose": torch.from_numpy(pose.astype(np.float32)),
                "intrinsics": torch.from_numpy(scale_intrinsics(k, *short_side_crop_geometry(h, w, s, s))),
                "index": torch.tensor(i)}
