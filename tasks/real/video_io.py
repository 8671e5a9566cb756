"""Decoding a few frames of a video file: torchcodec when it loads, PyAV otherwise.

PyAV bundles FFmpeg in its wheel, so it decodes on any machine; torchcodec (the decoder of HF
`datasets` >= 4) is faster and seeks exactly but its Linux wheel needs a matching CUDA torch,
so it is used only when it imports and loads. Both give the same frames for the same indices.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable

import numpy as np

from tasks.real.common import DatasetFormatError


@functools.lru_cache(maxsize=1)
def torchcodec_available() -> bool:
    """True when torchcodec imports and its native library loads (not just when installed)."""
    try:
        from torchcodec.decoders import VideoDecoder  # noqa: F401
    except Exception:  # noqa: BLE001 - ImportError, OSError from the .so, RuntimeError, ...
        return False
    return True


def _unreadable(path: Path, err: Exception) -> DatasetFormatError:
    return DatasetFormatError(
        f"video does not decode: {path} (expected a video file FFmpeg can read; "
        f"{type(err).__name__}: {err}). The file may be truncated: re-download or remove it.")


def _pyav_read(path: Path, choose: Callable[[int], np.ndarray], num_frames_hint: int) -> np.ndarray:
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DatasetFormatError(f"{path} has no video stream (expected a video file)")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            count = stream.frames or num_frames_hint
            # Decode only up to the last frame needed when the container states its length;
            # webm files (SSv2) often do not, so those are decoded whole and sampled after.
            wanted = choose(count) if count > 0 else None
            stop = int(wanted.max()) + 1 if wanted is not None else None
            frames = []
            for frame in container.decode(stream):
                frames.append(frame.to_ndarray(format="rgb24"))
                if stop is not None and len(frames) >= stop:
                    break
    except DatasetFormatError:
        raise
    except (av.error.FFmpegError, OSError, ValueError, EOFError) as err:
        raise _unreadable(path, err) from err
    if not frames:
        raise DatasetFormatError(f"video has no decodable frames: {path} (the file is empty or "
                                 f"truncated; re-download or remove it)")
    if wanted is None or len(frames) < stop:
        # The stated length was missing or wrong: sample again from what actually decoded.
        wanted = choose(len(frames))
    return np.stack([frames[i] for i in wanted])


def _torchcodec_read(path: Path, choose: Callable[[int], np.ndarray]) -> np.ndarray:
    from torchcodec.decoders import VideoDecoder

    try:
        dec = VideoDecoder(str(path), dimension_order="NHWC", seek_mode="exact")
        wanted = choose(len(dec))
        frames = dec.get_frames_at([int(i) for i in wanted]).data
    except Exception as err:  # noqa: BLE001 - torchcodec raises RuntimeError/ValueError freely
        raise _unreadable(path, err) from err
    return frames.numpy()


def read_video_frames(path: str | Path, choose: Callable[[int], np.ndarray],
                      backend: str = "auto") -> np.ndarray:
    """Decodes the frames `choose(num_frames_in_video)` selects.

    path: a video file (.mp4, .webm, ...).
    choose: number of frames in the video -> int indices (T,) into it (all < that number).
    backend: 'auto' (torchcodec when it loads, else PyAV), 'pyav' or 'torchcodec'.
    Returns uint8 (T, H, W, 3) RGB. Raises DatasetFormatError naming the file when it is
    missing, truncated or has no video stream.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetFormatError(f"video file not found: {path}")
    if backend == "auto":
        backend = "torchcodec" if torchcodec_available() else "pyav"
    if backend == "torchcodec":
        return _torchcodec_read(path, choose)
    if backend == "pyav":
        return _pyav_read(path, choose, num_frames_hint=0)
    raise ValueError(f"unknown video backend '{backend}'; expected 'auto', 'pyav' or 'torchcodec'")


def video_duration(path: str | Path) -> float | None:
    """Length of the first video stream in seconds, from the container header (None if unstated)."""
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            if stream.duration is not None and stream.time_base is not None:
                return float(stream.duration * stream.time_base)
            if container.duration is not None:
                return container.duration / av.time_base
    except (av.error.FFmpegError, OSError, IndexError) as err:
        raise _unreadable(Path(path), err) from err
    return None


def read_video_segment(path: str | Path, choose: Callable[[int], np.ndarray], start_s: float,
                       end_s: float) -> np.ndarray:
    """Decodes the frames `choose(n)` selects among the n frames shown in [start_s, end_s).

    For an untrimmed video (a Kinetics download named <youtube_id>.mp4): the container is
    seeked to the keyframe before start_s and only frames whose presentation time lies in the
    labelled segment are counted, so no frame outside the segment can be returned. PyAV is
    used whatever the backend, because the selection is by presentation time, not by index.
    Raises DatasetFormatError naming the file and the segment when no frame falls inside it.
    Returns uint8 (T, H, W, 3) RGB.
    """
    import av

    path = Path(path)
    if not path.is_file():
        raise DatasetFormatError(f"video file not found: {path}")
    eps = 1e-6

    def decode(keep: Callable[[int], bool]) -> tuple[int, dict[int, np.ndarray]]:
        count, kept = 0, {}
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            if start_s > 0:
                # Container-level seek (AV_TIME_BASE units) lands on the keyframe at or before it.
                container.seek(int(start_s * av.time_base))
            for frame in container.decode(stream):
                if frame.time is None:
                    raise DatasetFormatError(f"{path}: frames carry no timestamps, so the segment "
                                             f"[{start_s}, {end_s}) s cannot be located; use the "
                                             f"trimmed clip instead")
                if frame.time < start_s - eps:
                    continue
                if frame.time >= end_s - eps:
                    break
                if keep(count):
                    kept[count] = frame.to_ndarray(format="rgb24")
                count += 1
        return count, kept

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            rate = float(stream.average_rate or stream.guessed_rate or 0)
        # First pass with the frame count the rate predicts; a second only if that was wrong.
        estimate = max(int(round((end_s - start_s) * rate)), 1) if rate > 0 else 0
        wanted = set(int(i) for i in choose(estimate)) if estimate else None
        count, kept = decode((lambda i: i in wanted) if wanted is not None else (lambda i: True))
        if count == 0:
            duration = video_duration(path)
            raise DatasetFormatError(
                f"{path}: no frame inside the labelled segment [{start_s:g}, {end_s:g}) s (the "
                f"video is {duration if duration is not None else '?'} s long); this file is not "
                f"the untrimmed video of that segment. Download the trimmed clip "
                f"<youtube_id>_<start:06d>_<end:06d>.mp4 or remove the file")
        indices = choose(count)
        if any(int(i) not in kept for i in indices):
            need = set(int(i) for i in indices)
            count, kept = decode(lambda i: i in need)
    except DatasetFormatError:
        raise
    except (av.error.FFmpegError, OSError, ValueError, EOFError, IndexError) as err:
        raise _unreadable(path, err) from err
    return np.stack([kept[int(i)] for i in indices])


def write_video(path: str | Path, frames: np.ndarray, fps: int = 25, codec: str = "libx264") -> None:
    """Encodes uint8 (T, H, W, 3) frames with PyAV (fixtures, conversions). H and W even."""
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        for arr in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
