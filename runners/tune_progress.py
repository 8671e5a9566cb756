"""One line per finished sweep trial (Ray's own per-trial result tables are silenced)."""

from __future__ import annotations

import time
from typing import Mapping

from ray import tune


def describe(config: Mapping) -> str:
    """'block=2 timestep=200 variant=video' from a trial's sampled gin bindings."""
    sample = (config or {}).get("gin", {})
    return " ".join(f"{k.split('.')[-1]}={v.get('__name__', '+'.join(map(str, v.values()))) if isinstance(v, Mapping) else v}"
                    for k, v in sorted(sample.items()))


class TrialLines(tune.Callback):
    """Prints '[done/total] status axes: metric = value (seconds)' as trials end."""

    def __init__(self):
        self.t0 = time.time()
        self.done = 0

    def _line(self, trials, trial, status: str, text: str) -> None:
        self.done += 1
        print(f"[{self.done}/{len(trials)}] {status:8s} {describe(trial.config)}: {text} "
              f"({time.time() - self.t0:.0f}s)", flush=True)

    def on_trial_complete(self, iteration, trials, trial, **info):
        m = trial.last_result or {}
        if m.get("status") == "ok" and m.get("value") is not None:
            text = f"{m.get('metric')} = {m['value']:.4f}" + (" (reused)" if m.get("reused") else "")
        else:
            text = str(m.get("error"))
        self._line(trials, trial, str(m.get("status", "?")), text)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._line(trials, trial, "ERROR", "see the summary below")
