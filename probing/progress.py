"""Progress for long loops: a tqdm bar on a terminal, a plain line every N seconds otherwise (CI, Ray logs)."""

from __future__ import annotations

import sys
import time


class Progress:
    """`update(n=1, **postfix)` per step, `close()` at the end.

    total: number of steps; desc: what is running; every_s: seconds between plain lines when
    stderr is not a terminal (a Ray worker or CI log gets a few lines, not thousands).
    """

    def __init__(self, total: int, desc: str, every_s: float = 30.0):
        self.total, self.desc, self.every_s = total, desc, every_s
        self.n, self.t0, self.last = 0, time.time(), time.time()
        self.postfix: dict = {}
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm
            self.bar = tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True)

    def update(self, n: int = 1, **postfix) -> None:
        self.n += n
        self.postfix.update(postfix)
        if self.bar is not None:
            self.bar.update(n)
            if postfix:
                self.bar.set_postfix(postfix, refresh=False)
        elif time.time() - self.last >= self.every_s:
            self.last = time.time()
            self._line()

    def _line(self) -> None:
        elapsed = time.time() - self.t0
        rate = self.n / elapsed if elapsed > 0 else 0.0
        extra = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                         for k, v in self.postfix.items())
        print(f"[{self.desc}] {self.n}/{self.total} ({rate:.2f}/s, {elapsed:.0f}s) {extra}".rstrip(),
              file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
