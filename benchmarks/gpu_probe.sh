#!/usr/bin/env bash
# One probe on a GPU at paper scale: 284m (random weights, bf16), base tokenizer, 17 x 128 x 128
# synthetic motion clips (256 train / 64 val), block 5, t = 200; first the feature cache is
# filled (one backbone pass per batch), then the readout trains on cached features while
# nvidia-smi samples GPU utilisation every 250 ms.
# Usage: bash benchmarks/gpu_probe.sh OUT_DIR [more walt-probe flags, e.g. a head size]
set -euo pipefail
out=${1:?output folder}
shift
mkdir -p "$out"
export WALT_PROBE_SYNTHETIC_CACHE=${WALT_PROBE_SYNTHETIC_CACHE:-/tmp/walt_probe_synthetic}
nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader -lms 250 \
  > "$out/gpu_util.csv" &
smi=$!
trap 'kill $smi' EXIT
python -m runners.cli probe \
  --gin_file=experiments/probe_motion_small.gin --gin_file=backbones/284m.gin \
  --gin.WALT_CHECKPOINT=None --gin.TOKENIZER_CHECKPOINT=None --gin.Backbone.dtype="'bfloat16'" \
  --gin.SyntheticMotionActions.num_train=256 --gin.SyntheticMotionActions.num_val=64 \
  --gin.SyntheticMotionActions.num_proc=8 --gin.Probe.use_cache=True \
  --gin.Probe.batch_size=64 --gin.Probe.eval_batch_size=64 --gin.STEPS=300 \
  --gin.Probe.log_every=25 --gin.Run.output_dir="'$out/probe'" "$@" 2>&1 \
  | while IFS= read -r line; do printf '%s %s\n' "$(date +%H:%M:%S.%N | cut -c1-12)" "$line"; done \
  | tee "$out/probe.log"
