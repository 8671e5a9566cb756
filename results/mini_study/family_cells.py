"""Writes the gin files of mini-study part (b)'s family cells from part (a)'s grid results.

For each grid analog (objects, motion, depth, point tracks) and each model, the best
(block, t) cell of the grid is looked up; the other analogs of the same family are then probed
at that cell (the paper's Sec. 4: a family of tasks shares its best cell):

  objects       -> scenes, fine-grained, appearance actions (K400 and K700 analogs)
  depth         -> camera pose
  point tracks  -> box tracks
  (motion actions has no other member: its best cell is already in the grid)

    python results/mini_study/family_cells.py runs/sweeps/mini_grid_* --out runs/mini_study_cells

prints one line per family and writes <out>/family_<name>.gin (each runnable with
`walt-probe sweep --gin_file=<out>/family_<name>.gin`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from runners.report import collect  # noqa: E402

FAMILIES = {
    "appearance": ("synthetic_objects", ["@SyntheticScenes()", "@SyntheticFineGrained()",
                                         "@SyntheticAppearanceActions()", "@SyntheticAppearanceActionsXL()"]),
    "depth": ("synthetic_depth", ["@SyntheticCameraPose()"]),
    "tracking": ("synthetic_point_tracks", ["@SyntheticBoxTracks()"]),
}
CHECKPOINTS = {"image": "checkpoints/iwalt_small.safetensors", "video": "checkpoints/vwalt_small.safetensors"}
LABEL = {"image": "I-WALT", "video": "V-WALT"}


def best_cells(df, task: str) -> dict[str, tuple[int, int, float]]:
    """variant -> (block, t, value) of the best ok trial of `task` (mean over repeats), for both models."""
    rows = df[(df["task"] == task) & (df["status"] == "ok")]
    if rows.empty:
        raise SystemExit(f"no finished trial of {task} in the given experiments: run part (a) first")
    missing = sorted(set(LABEL) - set(rows["variant"]))
    if missing:
        raise SystemExit(f"no finished trial of {task} for {', '.join(LABEL[v] for v in missing)} in the given "
                         f"experiments: the grid is incomplete (an interrupted or partially copied sweep?); "
                         f"resume part (a) or pass all of its experiment folders")
    higher = bool(rows["higher_is_better"].iloc[0])
    out = {}
    for variant, g in rows.groupby("variant"):
        cell = g.groupby(["block", "t"])["value"].mean()
        block, t = cell.idxmax() if higher else cell.idxmin()
        out[variant] = (int(block), int(t), float(cell[(block, t)]))
    return out


def family_gin(name: str, cells: dict, tasks: list[str]) -> str:
    models = ",\n".join(
        f"    '{LABEL[v]}': {{'Backbone.variant': '{v}', 'Backbone.walt_checkpoint': '{CHECKPOINTS[v]}', "
        f"'Probe.block': {b}, 'Probe.timestep': {t}}}" for v, (b, t, _) in sorted(cells.items()))
    return (f"# Mini-study part (b): the {name} family at each model's best grid cell (written by\n"
            f"# results/mini_study/family_cells.py from part (a)).\n"
            f"include 'experiments/mini_study/cells_base.gin'\n\n"
            f"Sweep.space = [@backbones(), @variants(), @seeds()]\n"
            f"backbones.models = {{\n{models},\n}}\n"
            f"variants.tasks = {tasks!r}\n"
            f"Sweep.name = 'mini_cells_family_{name}'\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiments", nargs="+")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    df = collect(args.experiments)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, (task, members) in FAMILIES.items():
        cells = best_cells(df, task)
        path = out / f"family_{name}.gin"
        path.write_text(family_gin(name, cells, members))
        where = ", ".join(f"{LABEL[v]} block {b} t={t} ({val:.4g})" for v, (b, t, val) in sorted(cells.items()))
        print(f"family {name}: best of {task}: {where} -> {path}")


if __name__ == "__main__":
    main()
