"""`pip install .` (not editable) gives a working `walt-probe` outside the repository.

The test builds the wheel from a copy of the source (so no stale build/ folder leaks into it),
installs it with --no-deps into a fresh virtualenv (no system site-packages) outside the
repository, makes the dependencies importable by one .pth line pointing at the running
interpreter's site-packages (installing torch from scratch would take minutes), and runs the
console script from a temporary folder with no PYTHONPATH. It checks that the commands import
the installed copy, not the repository or an editable install, and that the gin files shipped
as package data are found. About 20 s.
"""

import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


# No PYTHONPATH: with the repository on it, pip would take the source tree's metadata for an
# installed walt-probe and skip the install, and the commands would import the repository.
CLEAN_ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "WALT_PROBE_ROOT")}


def _run(cmd, cwd, env=None, timeout=120):
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env or CLEAN_ENV, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd}: {proc.stdout[-2000:]}{proc.stderr[-3000:]}"
    return proc.stdout


def test_every_package_is_in_the_wheel_list():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {str(p.parent.relative_to(ROOT)).replace(os.sep, ".")
               for p in ROOT.glob("*/**/__init__.py") if not p.parts[len(ROOT.parts)].startswith(".")
               and p.parts[len(ROOT.parts)] not in ("tests", "benchmarks", "results", "build",
                                                    "mutants")}  # mutmut's working copy
    assert on_disk <= listed, f"packages missing from pyproject.toml: {sorted(on_disk - listed)}"


def test_wheel_installs_and_runs_outside_the_repository(tmp_path):
    # 1. a clean copy of what the wheel is built from
    src = tmp_path / "src"
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for top in sorted({p.split(".")[0] for p in packages if p != "walt_probe_gin"} | {"gin"}):
        shutil.copytree(ROOT / top, src / top, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    # 2. the wheel
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", dist, src],
         cwd=tmp_path, timeout=300)
    (wheel,) = dist.glob("walt_probe-*.whl")
    # 3. a fresh venv outside the repository; dependencies through one .pth line
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp_path)
    _run([sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "--no-deps",
          "--no-index", "--force-reinstall", "-q", wheel], cwd=tmp_path, timeout=300)
    site = Path(_run([venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     cwd=tmp_path).strip())
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # 4. the console script, from a folder that is not the repository, no PYTHONPATH
    env = CLEAN_ENV
    work = tmp_path / "elsewhere"
    work.mkdir()
    exe = venv / "bin" / "walt-probe"
    where = _run([venv / "bin" / "python", "-c", "import runners, gin; from runners import gin_setup; "
                  "print(runners.__file__); print(gin_setup.DEFAULT_SEARCH_PATH); print(gin.__file__)"],
                 cwd=work, env=env)
    runners_file, search_path, gin_file = where.split()
    assert runners_file.startswith(str(site)), runners_file
    assert search_path.startswith(str(site)) and Path(search_path, "backbones", "tiny.gin").is_file()
    assert "walt_probe_gin" not in gin_file  # the gin package is gin-config, not our folder
    sizes = _run([exe, "list", "sizes"], cwd=work, env=env)
    assert "284m" in sizes and "d=1024" in sizes
    experiments = _run([exe, "list", "experiments"], cwd=work, env=env)
    assert "experiments/quickstart.gin" in experiments
    assert "--gin_file" in _run([exe, "probe", "--help"], cwd=work, env=env)
