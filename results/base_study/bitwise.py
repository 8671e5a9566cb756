"""Does a rerun of the base study's pretraining reproduce its checkpoints bit for bit on a GPU?

  python results/base_study/bitwise.py --root R [--steps 60] [--deterministic 1] [--pool P] [--binding B]

Runs the study's two pretraining recipes (experiments/base_study/pretrain_tokenizer.gin, then
pretrain_walt.gin for I-WALT and V-WALT, both pairs at once) twice each, copies A and B at the
same time, through the real CLI, shortened to --steps steps (every other setting as in the study: data, batch, seeds,
augmentation, bf16, torch.compile for WALT, asynchronous checkpoint writes), and compares the
sha256 of every exported checkpoint of A with B's. Both WALT copies start from copy A's
tokenizer, so the WALT comparison does not inherit a tokenizer difference.

--deterministic 1 binds `Pretrain.deterministic = True` (deterministic kernels, cuDNN not
autotuned, a fixed cuBLAS workspace); 0 runs the study's own setting (off) for the contrast.
--pool points at an already rendered pretraining pool (the study's ROOT/pool) to skip rendering.

Writes R/bitwise.json: per file, A's and B's digests and whether they are equal; per run, the
steps, wall time and final loss. Exit status 0 whether or not the digests agree (the verdict is
the report); 1 if a run failed.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def pretrain(root: Path, name: str, gin_file: str, bindings: list[str]) -> dict:
    """One `walt-probe pretrain` run into root/name; returns its wall time and run.json summary."""
    run_dir = root / name
    cmd = [sys.executable, "-m", "runners.cli", "pretrain", f"--gin_file={gin_file}",
           *[f"--gin_bindings={b}" for b in [*bindings, f"Run.output_dir = '{run_dir}'"]]]
    t0 = time.time()
    with open(root / f"{name}.log", "w") as fh:
        proc = subprocess.run(cmd, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(
                                  [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])})
    if proc.returncode:
        tail = "".join(open(root / f"{name}.log").readlines()[-20:])
        raise RuntimeError(f"bitwise: run {name} failed (exit {proc.returncode}):\n{tail}")
    rec = json.loads((run_dir / "run.json").read_text())
    return {"wall_s": round(time.time() - t0, 1), "steps": rec["step"],
            "final_loss": rec["final_loss_mean_last_100"]}


def pair(root: Path, stage: str, gin_file: str, bindings: list[str]) -> dict:
    """Copies A and B of one run at the same time; the digests of their exports side by side."""
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        runs = {c: pool.submit(pretrain, root, f"{stage}_{c}", gin_file, bindings) for c in "AB"}
        runs = {c: f.result() for c, f in runs.items()}
    files = sorted(p.name for p in (root / f"{stage}_A" / "export").glob("*.safetensors"))
    digests = []
    for name in files:
        a, b = (root / f"{stage}_{c}" / "export" / name for c in "AB")
        da, db = sha256(a), sha256(b) if b.is_file() else None
        digests.append({"file": f"{stage}/export/{name}", "A": da, "B": db, "equal": da == db})
    return {"runs": runs, "files": digests}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", required=True)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--deterministic", type=int, default=1)
    ap.add_argument("--pool", default=None, help="a rendered pretraining pool (SyntheticClips.cache_dir)")
    ap.add_argument("--binding", action="append", default=[],
                    help="extra gin binding for every run (e.g. the tiny scale's, for a CPU check)")
    args = ap.parse_args(argv)
    root = Path(args.root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    common = [f"Pretrain.steps = {args.steps}", "Pretrain.warmup = 10", "Pretrain.log_every = 10",
              f"SyntheticClips.cache_dir = '{Path(args.pool).resolve() if args.pool else root / 'pool'}'"]
    if args.deterministic:
        common.append("Pretrain.deterministic = True")
    common += args.binding
    report = {"steps": args.steps, "deterministic": bool(args.deterministic), "stages": {}}
    try:
        report["stages"]["tokenizer"] = pair(root, "tokenizer", "experiments/base_study/pretrain_tokenizer.gin", common)
        tok = root / "tokenizer_A" / "export" / "tokenizer.safetensors"
        # I-WALT's pair and V-WALT's pair at the same time (four runs on one device, as the
        # study runs its two side by side): the compile time is paid once, not twice.
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            walt = {stage: pool.submit(pair, root, stage, "experiments/base_study/pretrain_walt.gin",
                                       [*common, f"VARIANT = '{variant}'", f"TOKENIZER_CHECKPOINT = '{tok}'"])
                    for stage, variant in (("iwalt", "image"), ("vwalt", "video"))}
            for stage, fut in walt.items():
                report["stages"][stage] = fut.result()
    except RuntimeError as err:
        report["error"] = str(err)
    files = [f for s in report["stages"].values() for f in s["files"]]
    report["all_equal"] = bool(files) and all(f["equal"] for f in files) and "error" not in report
    (root / "bitwise.json").write_text(json.dumps(report, indent=1))
    for f in files:
        print(f"{'equal  ' if f['equal'] else 'DIFFER '} {f['file']}  {f['A'][:16]}  {str(f['B'])[:16]}")
    print(f"bitwise: {len(files)} files, all equal: {report['all_equal']}"
          + (f"; error: {report['error']}" if "error" in report else ""))
    return 1 if "error" in report else 0


if __name__ == "__main__":
    sys.exit(main())
