"""Writers of tiny fixtures in the real on-disk formats (JPEG, 16-bit PNG, MP4/WebM, pickle, txt)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tasks.real.video_io import write_video


def _jpeg(path: Path, value: int = 128, size=(20, 28)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*size, 3), value, np.uint8)).save(path, quality=95)
    return path


def _depth_png(path: Path, mm: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mm.astype(np.uint16)).save(path)
    return path


def _video(path: Path, num_frames: int, size=(24, 32), codec: str | None = None) -> Path:
    """Frame t is a flat grey of value 10 * t + 10, so decoded values reveal which frames came."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = np.stack([np.full((*size, 3), 10 * t + 10, np.uint8) for t in range(num_frames)])
    write_video(path, frames, codec=codec or ("libvpx-vp9" if path.suffix == ".webm" else "libx264"))
    return path


def _json(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


@pytest.fixture
def jpeg():
    return _jpeg


@pytest.fixture
def depth_png():
    return _depth_png


@pytest.fixture
def video():
    return _video


@pytest.fixture
def write_json():
    return _json


def frame_ids(clip) -> np.ndarray:
    """Which source frames a clip of flat-grey frames (value 10 t + 10) holds."""
    return np.round((np.asarray(clip, np.float64).mean(axis=(1, 2, 3)) - 10) / 10).astype(int)


@pytest.fixture
def decode_frame_ids():
    return frame_ids
