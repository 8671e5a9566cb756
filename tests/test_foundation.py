"""The gin command line: order of files and bindings, the operative config, and bad input."""

import subprocess
import sys
from pathlib import Path

import gin
import pytest

from runners import cli, configurables, gin_setup

REPO = Path(__file__).resolve().parent.parent


def _args(tmp_path, *argv):
    argv = gin_setup.rewrite_shorthand(["probe", *argv])
    parser, _ = cli.build_parser(argv)
    ns = parser.parse_args(argv)
    return gin_setup.gin_args_from(ns)


@pytest.fixture
def two_files(tmp_path):
    (tmp_path / "a.gin").write_text("Run.seed = 1\nRun.output_dir = 'from_a'\n")
    (tmp_path / "b.gin").write_text("Run.seed = 2\n")
    return tmp_path


def test_shorthand_is_rewritten_to_a_binding():
    assert gin_setup.rewrite_shorthand(["--gin.Run.seed=4", "--x"]) == [
        "--gin_bindings=Run.seed = 4", "--x"]


@pytest.mark.parametrize("argv, seed", [
    ([], 2),                                                      # later file wins
    (["--gin_bindings=Run.seed = 3"], 3),                         # bindings after files
    (["--gin_bindings=Run.seed = 3", "--gin.Run.seed=4"], 4),     # later binding wins
    (["--gin.Run.seed=4", "--gin_param=Run.seed = 5"], 5),        # alias, in order
])
def test_files_then_bindings_later_wins(two_files, argv, seed):
    args = _args(two_files, "--gin_search_paths", str(two_files),
                 "--gin_file=a.gin", "--gin_file=b.gin", *argv)
    gin_setup.parse(args)
    assert gin.query_parameter("Run.seed") == seed
    assert gin.query_parameter("Run.output_dir") == "from_a"


def test_files_resolve_to_absolute_paths(two_files):
    args = _args(two_files, "--gin_search_paths", str(two_files), "--gin_file=a.gin")
    assert args.files == (str((two_files / "a.gin").resolve()),)


def test_operative_config_is_saved(two_files, tmp_path):
    args = _args(two_files, "--gin_search_paths", str(two_files), "--gin_file=a.gin",
                 "--gin.Run.seed=7")
    gin_setup.parse(args)
    run = configurables.Run()
    assert run.seed == 7
    path = gin_setup.save_operative_config(tmp_path / "run", args)
    text = path.read_text()
    assert "Run.seed = 7" in text and "Run.output_dir = 'from_a'" in text
    assert (tmp_path / "run" / "gin_args.json").is_file()


def _cli(*argv, cwd=REPO):
    exe = Path(sys.executable).with_name("walt-probe")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "runners.cli"]
    return subprocess.run([*cmd, *argv], cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("argv, expected", [
    (["--gin.Run.sed=3"], ["'Run' has no parameter 'sed'", "Did you mean: seed"]),
    (["--gin.Rnu.seed=3"], ["unknown configurable 'Rnu'", "Run"]),
    (["--gin_file=no_such_file.gin"], ["gin file not found: 'no_such_file.gin'"]),
    (["--gin_bindings=Run.seed"], ["malformed gin binding 'Run.seed'"]),
    (["--gin_bindings=Run.seed = [1,"], ["cannot parse gin binding 'Run.seed = [1,'"]),
    (["--gin.NOT_A_MACRO=3"], ["macro 'NOT_A_MACRO', which no gin file defines"]),
])
def test_bad_gin_input_fails_fast_with_a_named_message(argv, expected):
    result = _cli("probe", *argv)
    assert result.returncode == 2, result.stderr
    for fragment in expected:
        assert fragment in result.stderr, result.stderr


def test_help_describes_the_gin_flags():
    assert "--gin_file" in _cli("--help").stdout
    out = _cli("probe", "--help").stdout
    for flag in ("--gin_file", "--gin_bindings", "--gin_param", "--gin_search_paths", "--gin.Name.param"):
        assert flag in out


def test_gin_folder_does_not_shadow_the_library():
    assert not (REPO / "gin" / "__init__.py").exists()
    out = subprocess.run([sys.executable, "-c", "import gin; print(gin.__file__, gin.parse_config)"],
                         cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert "site-packages" in out


def test_every_gin_file_parses():
    """Every gin file in gin/ (except those with required macros) parses on its own."""
    failures = []
    for path in sorted((REPO / "gin").rglob("*.gin")):
        text = path.read_text()
        args = gin_setup.GinArgs(files=(str(path),))
        try:
            gin_setup.parse(args, finalize=False)
        except gin_setup.GinError as err:
            if "%gin.REQUIRED" not in text:
                failures.append(f"{path.relative_to(REPO)}: {err}")
    assert not failures, "\n".join(failures)
