#!/usr/bin/env bash
# The base study (issue 18) end to end on one GPU: see study.py's docstring for the stages.
#
#   bash results/base_study/run.sh ROOT [study.py flags...]      # e.g. ROOT=runs/base_study
#   bash results/base_study/run.sh /tmp/bs --tiny                # CPU test of every stage
#
# Resumable: rerun the same command after a kill; finished stages and probes are skipped.
# Logs: ROOT/study.log (stages, timings), ROOT/{tokenizer,iwalt,vwalt,data}.log, ROOT/run.log
# (everything). Results: ROOT/results/ (CSVs, tables.md, plots, loss curves, sample sheets).
set -euo pipefail
root=${1:?output folder}
shift
mkdir -p "$root"
cd "$(dirname "$0")/../.."
export PYTHONUNBUFFERED=1
${PYTHON:-python} results/base_study/study.py --root "$root" "$@" 2>&1 | tee -a "$root/run.log"
