"""Ways bytes on disk go bad, applied in place to a file: the corruption tests' one vocabulary.

  zeros     64 KiB (or the second half, if smaller) of zeros written into the middle of the file
  truncate  the file cut to half its length
  header    the first 16 bytes replaced by garbage (a torn header)
"""

from pathlib import Path

MODES = ("zeros", "truncate", "header")


def corrupt(path, how: str) -> None:
    """Damages `path` in place as `how` (one of MODES) says; always changes the bytes."""
    path = Path(path)
    data = bytearray(path.read_bytes())
    before = bytes(data)
    if how == "zeros":
        n = min(64 << 10, len(data) // 2)
        start = (len(data) - n) // 2 + n // 4 if len(data) > 2 * n else len(data) - n
        data[start:start + n] = bytes(n)
        if bytes(data) == before:  # the region was zeros already: hit the last bytes instead
            data[-n:] = b"\x5a" * n
    elif how == "truncate":
        data = data[: len(data) // 2]
    elif how == "header":
        data[:16] = b"\xff\xfe{garbage!!!}\x00\x01"[:16].ljust(16, b"#")
    else:
        raise ValueError(f"unknown corruption {how!r}; one of {MODES}")
    assert bytes(data) != before
    path.write_bytes(bytes(data))
