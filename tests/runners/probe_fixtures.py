"""Settings shared by the study-engine tests: the smoke config (tiny backbone, 5-frame 32 x 32 clips)."""

from pathlib import Path

SMOKE = "experiments/smoke_tiny.gin"


def smoke_args(out: Path, *more: str) -> list[str]:
    """`walt-probe probe` argv for the smoke config writing into `out`."""
    return [f"--gin_file={SMOKE}", f"--gin.Run.output_dir='{out}'", "--gin.STEPS=3",
            "--gin.SyntheticMotionActions.num_train=8", "--gin.SyntheticMotionActions.num_val=4",
            "--gin.Probe.batch_size=4", "--gin.Probe.eval_batch_size=4", *more]
