#!/usr/bin/env bash
# The mini-study, part by part (commands and settings: results/mini_study/README.md).
#
#   bash results/mini_study/run.sh grid  OUT [walt-probe flags...]   part (a): one sweep per analog
#   bash results/mini_study/run.sh cells OUT [walt-probe flags...]   part (b): paper, tracking and
#                                                                     family cells (needs part (a))
#
# Each sweep's trials go to runs/sweeps/mini_*; a part's feature cache is deleted when its
# sweep ends (a grid analog's cache is up to ~25 GB at the committed sizes); OUT receives a
# tarball of the part's experiment folders and the log, for `walt-probe report` elsewhere.
# Gin flags after OUT go to every command (e.g. --gin.Sweep.gpus_per_trial=0.1 on a GPU);
# SWEEP_ARGS (e.g. "--no-dashboard --num_cpus 16") to the sweeps only. DEADLINE_S (default:
# none) stops starting new sweeps after that many seconds; PYTHON (default: python) runs them;
# GRID_TASKS (default: all four) picks the grid analogs, CELLS (default: "tracking paper
# family") the part (b) sweeps.
set -uo pipefail
part=${1:?part: grid or cells}
out=${2:?output folder}
shift 2
mkdir -p "$out"
start=$(date +%s)
py=${PYTHON:-python}
cli=("$py" -m runners.cli)
log="$out/$part.log"

time_left() {
  [ -z "${DEADLINE_S:-}" ] && return 0
  [ $(( $(date +%s) - start )) -lt "$DEADLINE_S" ]
}

sweep() {  # gin file, then extra flags
  local gin=$1; shift
  if ! time_left; then echo "run.sh: deadline reached, skipping $gin" | tee -a "$log"; return; fi
  echo "run.sh: $(date +%T) sweep $gin" | tee -a "$log"
  "${cli[@]}" sweep --gin_file="$gin" --no-report ${SWEEP_ARGS:-} "$@" 2>&1 | tee -a "$log" | grep -E "^sweep:|ERROR|Error" || true
  rm -rf runs/cache/mini_study
}

baseline() {  # task gin file: renders its splits (cached for the sweeps) and scores the trivial predictor
  "${cli[@]}" baseline --gin_file="$1" --out "$out/baselines" "${@:2}" 2>&1 | tee -a "$log" | tail -n 1
}

case $part in
  grid)
    for task in ${GRID_TASKS:-objects motion depth point_tracks}; do
      baseline "experiments/mini_study/grid_$task.gin" "$@"
      sweep "experiments/mini_study/grid_$task.gin" "$@"
    done
    tar czf "$out/grid.tgz" --exclude='*/checkpoint_*' runs/sweeps/mini_grid_* ;;
  cells)
    # A fresh machine: part (a)'s experiments come back from its tarball (carried as .mini/).
    [ -f .mini/grid.tgz ] && tar xzf .mini/grid.tgz --skip-old-files
    "$py" results/mini_study/family_cells.py runs/sweeps/mini_grid_* --out runs/mini_study_cells \
      | tee -a "$log" || exit 1
    for task in SyntheticScenes SyntheticFineGrained SyntheticAppearanceActions \
                SyntheticAppearanceActionsXL SyntheticCameraPose SyntheticBoxTracks; do
      baseline experiments/mini_study/cells_base.gin --gin.TASK="@$task()" "$@"
    done
    for cells in ${CELLS:-tracking paper family}; do
      case $cells in
        family) gins=(runs/mini_study_cells/family_*.gin) ;;
        *) gins=("experiments/mini_study/cells_$cells.gin") ;;
      esac
      for gin in "${gins[@]}"; do sweep "$gin" "$@"; done
    done
    tar czf "$out/cells.tgz" --exclude='*/checkpoint_*' runs/sweeps/mini_cells_* runs/mini_study_cells ;;
  *) echo "run.sh: unknown part '$part' (grid or cells)" >&2; exit 2 ;;
esac
echo "run.sh: $part done in $(( $(date +%s) - start )) s" | tee -a "$log"
