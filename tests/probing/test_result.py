"""ProbeResult: the one result schema round-trips, names what is missing, reads v1 explicitly."""

import json
import math

import pytest

from walt.noise import NoiseSchedule
from probing.result import SCHEMA_VERSION, ProbeResult, ResultError, failed


def _ok(tmp_path, **over) -> ProbeResult:
    fields = dict(status="ok", error=None, task="synthetic_motion", metric="top1",
                  higher_is_better=True, value=0.25, metrics={"top1": 0.25}, backbone="V-WALT-d256-L8",
                  family="walt", variant="video", size="small", fingerprint="abc", num_blocks=8,
                  block=4, block_spec=0.5, depth=0.5, t=0,
                  noise={"native": 0.0, "log_snr": math.inf, "walt_t": 0.0}, split="val", seed=1,
                  noise_seed=0, steps=60, final_loss=2.3, head_params=1234, feature_source="cache",
                  backbone_batches=0, compile_head=None, wall_s=1.5, extract_s=0.0, readout_s=1.2,
                  code="c0de", output_dir=str(tmp_path), bindings=["Probe.block = 0.5"])
    fields.update(over)
    return ProbeResult(**fields)


def test_round_trip_through_json_and_disk(tmp_path):
    r = _ok(tmp_path)
    assert ProbeResult.from_json(r.to_json()) == r          # +inf log-SNR survives JSON
    assert ProbeResult.read(r.write(tmp_path)) == r
    assert json.loads(r.to_json())["schema_version"] == SCHEMA_VERSION
    f = failed(ValueError("bad block"), tmp_path, bindings=["Probe.block = 99"], t=200)
    assert ProbeResult.from_json(f.to_json()) == f and f.error == "ValueError: bad block"


@pytest.mark.parametrize("field", ["higher_is_better", "family", "noise", "schema_version", "code"])
def test_a_missing_field_is_named_with_the_file(tmp_path, field):
    path = _ok(tmp_path).write(tmp_path)
    data = json.loads(path.read_text())
    del data[field]
    path.write_text(json.dumps(data))
    with pytest.raises(ResultError, match=f"{path}.*'{field}'" if field != "schema_version" else str(path)):
        ProbeResult.read(path)


def test_a_malformed_field_is_named(tmp_path):
    path = _ok(tmp_path).write(tmp_path)
    data = json.loads(path.read_text())
    data["block"] = "four"
    path.write_text(json.dumps(data))
    with pytest.raises(ResultError, match="field 'block'"):
        ProbeResult.read(path)


def test_an_ok_result_must_say_what_it_measured(tmp_path):
    with pytest.raises(ResultError, match="needs family"):
        _ok(tmp_path, family=None)
    with pytest.raises(ResultError, match="needs a value"):
        _ok(tmp_path, value=None)


def test_v1_results_are_read_explicitly(tmp_path):
    v1 = {"status": "ok", "error": None, "task": "synthetic_objects", "metric": "top1", "value": 0.125,
          "higher_is_better": True, "metrics": {"top1": 0.125}, "backbone": "I-WALT-d256-L8",
          "fingerprint": "f", "variant": "image", "size": "small", "num_blocks": 8, "block": 2,
          "block_spec": 2, "depth": 0.25, "timestep": 200, "steps": 60, "final_loss": 2.0,
          "feature_source": "cache", "backbone_batches": 0, "compile_head": None, "head_params": 5,
          "seed": 0, "wall_s": 20.6, "extract_s": 0.0, "readout_s": 3.0, "output_dir": str(tmp_path)}
    r = ProbeResult.from_json(json.dumps(v1), "v1.json")
    assert r.family == "walt" and r.t == 200 and r.noise["walt_t"] == 200.0
    abar = float(NoiseSchedule().alphas_cumprod[200])
    assert r.noise["log_snr"] == pytest.approx(math.log(abar / (1 - abar))) and r.value == 0.125
    del v1["task"]
    with pytest.raises(ResultError, match="v1.json.*'task'"):
        ProbeResult.from_json(json.dumps(v1), "v1.json")
