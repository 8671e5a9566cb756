"""Bad input through the real CLI (runners.cli.main, one process): every case exits 2 with ONE
line on stderr that names the input, and no traceback (runners/cli.py's one error surface).

The cases are the ones a hostile but fair new user tried (issue 21) plus the ones found while
fixing them: checkpoints (missing, no sidecar, the wrong kind, corrupt three ways, another
size / variant), real dataset folders (missing, empty, garbage), gin values of the wrong type,
timesteps that are not step indices, a corrupt feature cache, pretraining states. Each row is
argv + the text its error line must contain. Tiny configs: the whole table takes well under a
minute on a CPU once the smoke data are rendered.
"""

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import torch

from runners import cli
from walt.checkpoint import save_module, sidecar_path
from walt.transformer import WALT
from walt_probe.errors import debug_requested

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from corruption import corrupt  # noqa: E402
from probe_fixtures import SMOKE, smoke_args  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "checkpoints"


@pytest.fixture(scope="module")
def bad(tmp_path_factory, synthetic_cache):
    """A folder of broken inputs, each built once: checkpoints, dataset folders, run folders."""
    d = tmp_path_factory.mktemp("bad")
    good = save_module(WALT.from_size("tiny", latent_shape=(2, 4, 4)), d / "good.safetensors")
    for name in ("nosidecar", "truncate", "zeros", "header", "legacy", "badjson"):
        shutil.copy(good, d / f"{name}.safetensors")
        shutil.copy(sidecar_path(good), d / f"{name}.json")
    (d / "nosidecar.json").unlink()
    for how in ("truncate", "zeros", "header"):
        corrupt(d / f"{how}.safetensors", how)
    legacy = json.loads((d / "legacy.json").read_text())
    del legacy["sha256"]  # written before digests: safetensors itself must notice the damage
    (d / "legacy.json").write_text(json.dumps(legacy))
    corrupt(d / "legacy.safetensors", "truncate")
    (d / "badjson.json").write_text("{not json")
    # Real dataset folders: empty, and SSv2 with binary garbage where its JSON files belong.
    (d / "empty").mkdir()
    garbage = d / "ssv2_garbage" / "labels"
    garbage.mkdir(parents=True)
    for name in ("labels.json", "train.json", "validation.json"):
        (garbage / name).write_bytes(bytes(range(128, 256)) * 8)
    wrong = d / "ssv2_wrong" / "labels"
    wrong.mkdir(parents=True)
    (wrong / "labels.json").write_text('{"Pushing [something]": "zero"}')
    # Pretraining run folders: a truncated state; a state where none was asked for.
    for run in ("pre_trunc", "pre_exists"):
        (d / run / "checkpoints").mkdir(parents=True)
        torch.save({"model": {}, "optimizer": {}, "step": 2, "identity": {}},
                   d / run / "checkpoints" / "step_0000002.pt")
    corrupt(d / "pre_trunc" / "checkpoints" / "step_0000002.pt", "truncate")
    # Render the smoke data now: the first use prints progress bars on stderr.
    from runners import gin_setup, trial
    gin_setup.parse(gin_setup.GinArgs(files=(str(gin_setup.DEFAULT_SEARCH_PATH / SMOKE),)),
                    [b.split("=", 1)[0][6:] + " = " + b.split("=", 1)[1] for b in smoke_args(d)[1:]
                     if b.startswith("--gin.SyntheticMotionActions")])
    trial._bound("Probe.task")
    return d


def _probe(out, *more):
    return ["probe", *smoke_args(out, *more)]


def _pretrain(out, *more):
    return ["pretrain", "--gin_file=experiments/pretrain_tiny.gin", f"--gin.Run.output_dir='{out}'", *more]


# (id, argv builder (bad folder, tmp run folder) -> argv, text the one error line must contain)
CASES = [
    # --- checkpoints
    ("ckpt-missing", lambda b, o: _probe(o, f"--gin.WALT_CHECKPOINT='{b}/absent.safetensors'"),
     "absent.safetensors"),
    ("ckpt-no-sidecar", lambda b, o: _probe(o, f"--gin.WALT_CHECKPOINT='{b}/nosidecar.safetensors'"),
     "nosidecar.json"),
    ("ckpt-tokenizer-as-walt",
     lambda b, o: _probe(o, f"--gin.WALT_CHECKPOINT='{SHIPPED}/tokenizer_small.safetensors'"),
     "holds a tokenizer checkpoint"),
    ("ckpt-truncated", lambda b, o: _probe(o, f"--gin.WALT_CHECKPOINT='{b}/truncate.safetensors'"),
     "truncate.safetensors is corrupt"),
    ("ckpt-zeroed", lambda b, o: _probe(o, f"--gin.WALT_CHECKPOINT='{b}/zeros.safetensors'"),
     "zeros.safetensors is corrupt"),
    ("ckpt-garbled-header", lambda b, o: _probe(o, f"--gin.WALT_CHECKPOINT='{b}/header.safetensors'"),
     "header.safetensors is corrupt"),
    ("ckpt-truncated-no-digest", lambda b, o: _probe(o, f"--gin.WALT_CHECKPOINT='{b}/legacy.safetensors'"),
     "legacy.safetensors' cannot be read"),
    ("ckpt-sidecar-not-json", lambda b, o: _probe(o, f"--gin.WALT_CHECKPOINT='{b}/badjson.safetensors'"),
     "badjson.json' is not JSON"),
    ("ckpt-small-under-tiny",
     lambda b, o: _probe(o, f"--gin.WALT_CHECKPOINT='{SHIPPED}/vwalt_small.safetensors'"),
     "configured size is 'tiny'"),
    ("ckpt-iwalt-as-video",
     lambda b, o: _probe(o, "--gin.BACKBONE_SIZE='small'",
                         f"--gin.WALT_CHECKPOINT='{SHIPPED}/iwalt_small.safetensors'"),
     "Backbone.variant = 'video'"),
    ("tokenizer-ckpt-missing", lambda b, o: _probe(o, f"--gin.TOKENIZER_CHECKPOINT='{b}/tok.safetensors'"),
     "tok.safetensors"),
    # --- real dataset folders
    ("ssv2-missing", lambda b, o: _probe(o, "--gin_file=tasks/real/ssv2.gin", f"--gin.SSV2_DIR='{b}/nowhere'"),
     "nowhere"),
    ("ssv2-empty", lambda b, o: _probe(o, "--gin_file=tasks/real/ssv2.gin", f"--gin.SSV2_DIR='{b}/empty'"),
     "SSv2 label map"),
    ("ssv2-garbage", lambda b, o: _probe(o, "--gin_file=tasks/real/ssv2.gin", f"--gin.SSV2_DIR='{b}/ssv2_garbage'"),
     "labels.json: not a text file"),
    ("ssv2-wrong-json", lambda b, o: _probe(o, "--gin_file=tasks/real/ssv2.gin", f"--gin.SSV2_DIR='{b}/ssv2_wrong'"),
     "template -> integer id"),
    ("imagenet-empty", lambda b, o: _probe(o, "--gin_file=tasks/real/imagenet.gin", f"--gin.IMAGENET_DIR='{b}/empty'"),
     "empty"),
    ("imagenet-unset", lambda b, o: _probe(o, "--gin_file=tasks/real/imagenet.gin"), "IMAGENET_DIR"),
    # --- gin values of the wrong kind
    ("task-as-string", lambda b, o: _probe(o, "--gin.TASK='motion'"), "Probe.task = 'motion'"),
    ("timestep-fraction", lambda b, o: _probe(o, "--gin.TIMESTEP=999.9"), "Probe.timestep = 999.9"),
    ("timestep-negative", lambda b, o: _probe(o, "--gin.TIMESTEP=-1"), "Probe.timestep = -1"),
    ("timestep-1000", lambda b, o: _probe(o, "--gin.Probe.timestep=1000"), "outside [0, 1000)"),
    ("block-99", lambda b, o: _probe(o, "--gin.Probe.block=99"), "block 99"),
    ("cache-dtype", lambda b, o: _probe(o, "--gin.Probe.cache_dtype='int8'"), "Probe.cache_dtype = 'int8'"),
    ("residence", lambda b, o: _probe(o, "--gin.Probe.feature_residence='gpu'"), "feature_residence = 'gpu'"),
    ("size-unknown", lambda b, o: _probe(o, "--gin.BACKBONE_SIZE='huge'"), "'huge'"),
    ("variant-unknown", lambda b, o: _probe(o, "--gin.VARIANT='both'"), "'both'"),
    ("gin-typo", lambda b, o: _probe(o, "--gin.Probe.blok=2"), "Did you mean: block"),
    ("gin-file-missing", lambda b, o: ["probe", "--gin_file=experiments/nope.gin"], "nope.gin"),
    ("gin-bare-word", lambda b, o: _probe(o, "--gin.Probe.cache_dtype=float16"), "float16"),
    ("gin-no-equals", lambda b, o: ["probe", f"--gin_file={SMOKE}", "--gin_bindings=Probe.block"], "Probe.block"),
    ("extract-bad-blocks", lambda b, o: ["extract", *smoke_args(o), "--blocks", "0,x"], "'x'"),
    ("sweep-timestep-5000",
     lambda b, o: ["sweep", "--gin_file=experiments/quickstart.gin", "--gin.block_x_timestep.timesteps=[0, 5000]"],
     "[5000]"),
    ("baseline-no-task", lambda b, o: ["baseline", "--gin_file=backbones/tiny.gin"], "TASK"),
    # --- pretraining
    ("pretrain-resume-truncated", lambda b, o: _pretrain(b / "pre_trunc", "--resume"), "step_0000002.pt"),
    ("pretrain-resume-nothing", lambda b, o: _pretrain(o, "--resume"), "no checkpoint under"),
    ("pretrain-exists", lambda b, o: _pretrain(b / "pre_exists"), "pre_exists"),
    ("pretrain-stage", lambda b, o: _pretrain(o, "--gin.STAGE='vae'"), "Pretrain.stage = 'vae'"),
    ("pretrain-no-tokenizer",
     lambda b, o: _pretrain(o, "--gin.STAGE='diffusion'", f"--gin.TOKENIZER_CHECKPOINT='{b}/tok.safetensors'"),
     "tok.safetensors"),
]


@pytest.mark.parametrize("argv,needle", [pytest.param(a, n, id=i) for i, a, n in CASES])
def test_bad_input_exits_2_with_one_line_naming_it(bad, tmp_path, synthetic_cache, capsys, argv, needle):
    rc = cli.main([str(a) for a in argv(bad, tmp_path / "run")])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2, err
    assert "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].startswith("walt-probe "), err
    assert needle in lines[0], lines[0]


def test_the_table_is_big_enough():
    assert len(CASES) >= 25


def test_debug_shows_the_traceback_and_an_unexpected_error_keeps_it(tmp_path, capsys, monkeypatch):
    argv = _probe(tmp_path / "run", "--gin.TIMESTEP=999.9")
    assert cli.main([*argv, "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("walt-probe probe:")
    monkeypatch.setenv("WALT_PROBE_DEBUG", "1")
    assert debug_requested()
    monkeypatch.setenv("WALT_PROBE_DEBUG", "0")
    assert not debug_requested()
    # A bug (not a WaltProbeError) is not swallowed: it propagates with its traceback (exit 1).
    from runners import probe as probe_command
    monkeypatch.setattr(probe_command, "main", lambda args, gin_args: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        cli.main(_probe(tmp_path / "run"))
