"""`ProbeResult`: the one on-disk schema of a probe's result (`metrics.json` in the run folder).

Written by the engine (probing/probe.py) and by a trial that failed; read by the report and
nothing else. Every field is written; reading checks every field and its type and raises
`ResultError` naming the file and the field, so a table is never filled with a value guessed
from another trial.

Schema history:
  1  (no `schema_version` key) the engine's 27-key dict before the redesign. Read explicitly by
     `ProbeResult.from_v1`: every v1 result came from WALT (the only backbone family then), so
     family = 'walt', and its noise level is the WALT schedule's at the recorded timestep.
  2  the dataclass without `split_metrics`. Read by `from_dict`: split_metrics = {split: metrics}
     (v2 evaluated one split).
  3  this dataclass: `split_metrics` holds every held-out split the head was evaluated on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path
from typing import Any, Sequence

from walt.checkpoint import write_text_atomic
from walt_probe.errors import ResultFileError

SCHEMA_VERSION = 3
READABLE_VERSIONS = (2, 3)
STATUS_OK, STATUS_DIVERGED, STATUS_FAILED = "ok", "diverged", "failed"
STATUSES = (STATUS_OK, STATUS_DIVERGED, STATUS_FAILED)
FILENAME = "metrics.json"


class ResultError(ResultFileError):
    """A result file is missing a field, has one of the wrong type, or is not a result at all."""


@dataclasses.dataclass(frozen=True)
class ProbeResult:
    """One probe run's result.

    status: 'ok' | 'diverged' (non-finite loss or metric; value None) | 'failed' (raised; error
      and traceback set, fields the run never learnt are None).
    error: why it is not 'ok' (None when ok).
    task, metric, higher_is_better: the task's name and headline metric and its direction.
    value: the headline metric on `split` (None unless ok); metrics: every metric {name: value}.
    backbone, family, variant, size, fingerprint, num_blocks: what the backbone says about itself
      (backbones/base.py): name for tables, family ('walt', ...), 'image' | 'video', size name,
      weights+config hash, L.
    block: the block read (0 = embedding output); block_spec: as bound (int or depth fraction);
      depth: block / L.
    t: the noise level as given, in the backbone's native units (WALT: timestep index).
    noise: {'native', 'log_snr', 'walt_t'} (backbones.base.NoiseLevel) or None for backbones
      without noise. log_snr may be +-inf (written as the JSON strings 'inf' / '-inf').
    split: the split `value` and `metrics` are measured on: the selection split ('val').
    split_metrics: {split: {metric name: value}} for every held-out split the one trained head was
      evaluated on (Probe.eval_splits the task has), the selection split included; a sweep selects
      on `split` and the report reports 'test' from here. {} unless ok.
    seed: the readout's seed (head init, batch order); noise_seed: the fixed-noise offset.
    steps, final_loss, head_params: readout training length, last finite loss, head size.
    feature_source: 'cache' | 'on-the-fly'; backbone_batches: backbone passes this run paid.
    compile_head: None or the torch.compile mode of the head.
    wall_s, extract_s, readout_s: seconds (whole run, feature extraction, readout train + eval).
    code: code fingerprint of the library packages (`code_fingerprint`).
    output_dir: the run folder; bindings: the trial's own gin bindings (sweeps), else [].
    traceback: the tail of the traceback of a failed run, else None.
    """

    status: str
    error: str | None
    task: str | None
    metric: str | None
    higher_is_better: bool | None
    value: float | None
    metrics: dict
    backbone: str | None
    family: str | None
    variant: str | None
    size: str | None
    fingerprint: str | None
    num_blocks: int | None
    block: int | None
    block_spec: Any
    depth: float | None
    t: int | None
    noise: dict | None
    split: str
    seed: int | None
    noise_seed: int | None
    steps: int | None
    final_loss: float | None
    head_params: int | None
    feature_source: str | None
    backbone_batches: int | None
    compile_head: str | None
    wall_s: float | None
    extract_s: float | None
    readout_s: float | None
    code: str
    output_dir: str
    bindings: list = dataclasses.field(default_factory=list)
    traceback: str | None = None
    split_metrics: dict = dataclasses.field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    # ---- validation -------------------------------------------------------------------------
    # Fields every ok / diverged result must carry (a failed run may not have learnt them).
    KNOWN_WHEN_RUN = ("task", "metric", "higher_is_better", "backbone", "family", "variant", "size",
                      "fingerprint", "num_blocks", "block", "depth", "t", "seed", "steps")

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ResultError(f"status {self.status!r} is not one of {STATUSES}")
        if self.status != STATUS_FAILED:
            unknown = [f for f in self.KNOWN_WHEN_RUN if getattr(self, f) is None]
            if unknown:
                raise ResultError(f"a '{self.status}' result needs {', '.join(unknown)}")
        if self.status == STATUS_OK and self.value is None:
            raise ResultError("an 'ok' result needs a value")
        if self.status != STATUS_OK and not self.error:
            raise ResultError(f"a '{self.status}' result needs an error message")

    def value_on(self, split: str) -> float | None:
        """The headline metric on `split` (None when not ok or the split was not evaluated)."""
        if self.status != STATUS_OK:
            return None
        if split == self.split and not self.split_metrics:
            return self.value
        value = self.split_metrics.get(split, {}).get(self.metric)
        return None if value is None else float(value)

    # ---- JSON ---------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(_encode(self.to_dict()), indent=2, sort_keys=True)

    def write(self, out_dir: str | Path) -> Path:
        """`<out_dir>/metrics.json`, atomically (a reader sees the old file or the whole new one)."""
        path = Path(out_dir) / FILENAME
        write_text_atomic(path, self.to_json())
        return path

    @classmethod
    def from_json(cls, text: str, source: str = "<string>") -> "ProbeResult":
        """Parses a result; v1 (no schema_version) is migrated by `from_v1`. Raises ResultError
        naming `source` and the first missing or malformed field."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ResultError(f"{source}: not JSON ({err})") from None
        if not isinstance(data, dict):
            raise ResultError(f"{source}: a result is a JSON object, got {type(data).__name__}")
        if "schema_version" not in data:
            return cls.from_v1(data, source)
        return cls.from_dict(data, source)

    @classmethod
    def read(cls, path: str | Path) -> "ProbeResult":
        path = Path(path)
        try:
            text = path.read_text()
        except UnicodeDecodeError as err:
            raise ResultError(f"{path}: not a text file (byte {err.start} does not decode); it is "
                              f"damaged: rerun the trial (a sweep reruns a trial whose result it "
                              f"cannot read)") from None
        return cls.from_json(text, str(path))

    @classmethod
    def from_dict(cls, data: dict, source: str = "<dict>") -> "ProbeResult":
        version = data.get("schema_version")
        if version not in READABLE_VERSIONS:
            raise ResultError(f"{source}: schema_version {version!r}; this code reads "
                              f"{READABLE_VERSIONS} (and v1 files without the key)")
        if version == 2:  # v2 evaluated one split: its metrics are that split's
            metrics = data.get("metrics") if isinstance(data.get("metrics"), dict) else {}
            data = {**data, "schema_version": SCHEMA_VERSION,
                    "split_metrics": {data.get("split", "val"): metrics} if metrics else {}}
        kwargs = {}
        for f in dataclasses.fields(cls):
            if f.name not in data:  # every field is written, so an absent one is an error
                raise ResultError(f"{source}: missing field '{f.name}'")
            value = _decode(data[f.name])
            if not _type_ok(f.name, value):
                raise ResultError(f"{source}: field '{f.name}' = {value!r} has the wrong type "
                                  f"({_TYPES.get(f.name, 'any')} expected)")
            kwargs[f.name] = value
        try:
            return cls(**kwargs)
        except ResultError as err:
            raise ResultError(f"{source}: {err}") from None

    @classmethod
    def from_v1(cls, m: dict, source: str = "<v1>") -> "ProbeResult":
        """A v1 metrics.json (before the redesign), read explicitly: status 'error' -> 'failed';
        family 'walt' (v1 knew no other); noise level from the WALT schedule at `timestep`;
        fields v1 never recorded (split 'val', noise_seed 0, code '') take the values v1 used."""
        status = {"error": STATUS_FAILED}.get(m.get("status"), m.get("status"))
        if status is None:
            raise ResultError(f"{source}: missing field 'status'")
        required = ("task", "metric", "value", "backbone", "block", "timestep")
        missing = [k for k in required if k not in m] if status != STATUS_FAILED else []
        if missing:
            raise ResultError(f"{source}: v1 result without schema_version is missing field "
                              f"'{missing[0]}'")
        t = m.get("timestep")
        noise = None
        if t is not None:
            from backbones.base import log_snr_from_abar
            from walt.noise import NoiseSchedule
            abar = float(NoiseSchedule().alphas_cumprod[int(t)])
            noise = {"native": float(t), "log_snr": log_snr_from_abar(abar), "walt_t": float(t)}
        fields = {f.name for f in dataclasses.fields(cls)}
        data = {k: m.get(k) for k in fields if k in m}
        metrics = m.get("metrics") or {}
        data.update(status=status, t=t, noise=noise, family="walt" if m.get("backbone") else None,
                    split="val", split_metrics={"val": metrics} if metrics else {},
                    noise_seed=m.get("noise_seed", 0), code=m.get("code", ""),
                    metrics=m.get("metrics") or {}, bindings=list(m.get("bindings") or []),
                    output_dir=m.get("output_dir") or str(Path(source).parent),
                    schema_version=SCHEMA_VERSION)
        for f in dataclasses.fields(cls):
            data.setdefault(f.name, None)
        try:
            return cls(**data)
        except ResultError as err:
            raise ResultError(f"{source}: {err}") from None

    # ---- what the CLI prints -----------------------------------------------------------------
    def one_line(self) -> str:
        where = (f"{self.backbone} block {self.block}/{self.num_blocks} t={self.t} "
                 f"({self.feature_source})")
        if self.status != STATUS_OK:
            return f"probe {self.task}: {self.status.upper()} - {self.error} | {where} | {self.output_dir}"
        arrow = "higher" if self.higher_is_better else "lower"
        return (f"probe {self.task}: {self.metric} = {self.value:.4f} ({arrow} is better) | {where} | "
                f"{self.steps} steps, {self.wall_s:.1f}s | {self.output_dir}")


def failed(err: BaseException | str, output_dir: str | Path, traceback: str | None = None,
           bindings: Sequence[str] = (), **known) -> ProbeResult:
    """The result of a run that raised: status 'failed', the message, what the caller knows
    (e.g. block_spec and t from the trial's bindings), every other field None."""
    msg = err if isinstance(err, str) else f"{type(err).__name__}: {err}"
    data = {f.name: None for f in dataclasses.fields(ProbeResult)}
    data.update(status=STATUS_FAILED, error=msg, metrics={}, split="val", split_metrics={},
                code=code_fingerprint(),
                output_dir=str(output_dir), bindings=list(bindings), traceback=traceback,
                schema_version=SCHEMA_VERSION)
    data.update(known)
    return ProbeResult(**data)


# ---- the code fingerprint ------------------------------------------------------------------------
REPO_ROOT = Path(__file__).resolve().parent.parent
CODE_PACKAGES = ("walt_probe", "walt", "backbones", "readouts", "tasks", "probing", "pretraining", "runners",
                 "search_spaces")
_CODE: dict = {}


def code_fingerprint(root: Path = REPO_ROOT, packages: Sequence[str] = CODE_PACKAGES) -> str:
    """sha256 (16 hex) over the project's Python source (paths + bytes, packages that exist), so a
    result and a sweep record which code made them. The repository's own is computed once per
    process (every trial of a sweep worker asks)."""
    key = (str(root), tuple(packages))
    if key not in _CODE or (Path(root), tuple(packages)) != (REPO_ROOT, CODE_PACKAGES):
        h = hashlib.sha256()
        for pkg in packages:
            for path in sorted((Path(root) / pkg).rglob("*.py")):
                h.update(str(path.relative_to(root)).encode())
                h.update(path.read_bytes())
        _CODE[key] = h.hexdigest()[:16]
    return _CODE[key]


# ---- JSON helpers: +-inf / nan as strings (JSON has no such numbers) -----------------------------
_TYPES = {"status": "str", "error": "str|None", "task": "str|None", "metric": "str|None",
          "higher_is_better": "bool|None", "value": "number|None", "metrics": "dict",
          "backbone": "str|None", "family": "str|None", "variant": "str|None", "size": "str|None",
          "fingerprint": "str|None", "num_blocks": "int|None", "block": "int|None",
          "depth": "number|None", "t": "int|None", "noise": "dict|None", "split": "str",
          "split_metrics": "dict",
          "seed": "int|None", "noise_seed": "int|None", "steps": "int|None",
          "final_loss": "number|None", "head_params": "int|None", "feature_source": "str|None",
          "backbone_batches": "int|None", "compile_head": "str|None", "wall_s": "number|None",
          "extract_s": "number|None", "readout_s": "number|None", "code": "str",
          "output_dir": "str", "bindings": "list", "traceback": "str|None", "schema_version": "int"}
_PY = {"str": str, "bool": bool, "dict": dict, "list": list, "int": int, "number": (int, float)}


def _type_ok(name: str, value) -> bool:
    spec = _TYPES.get(name)
    if spec is None:
        return True
    for option in spec.split("|"):
        if option == "None" and value is None:
            return True
        if option in _PY and isinstance(value, _PY[option]):
            if option in ("int", "number") and isinstance(value, bool):
                continue  # JSON true is not a number
            return True
    return False


def _encode(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return repr(obj)  # 'inf', '-inf', 'nan'
    if isinstance(obj, dict):
        return {k: _encode(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_encode(v) for v in obj]
    return obj


def _decode(obj):
    if isinstance(obj, dict):
        return {k: (float(v) if k in ("log_snr", "native", "walt_t") and v in ("inf", "-inf", "nan")
                    else _decode(v)) for k, v in obj.items()}
    return obj
