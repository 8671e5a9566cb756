#!/usr/bin/env bash
# The base study's run on a lent GPU machine whose files vanish when the session ends: the whole
# pipeline starts detached (setsid) and logs to disk, short calls poll it, and one call packs
# what is worth keeping (results, logs, run records; no checkpoints, caches or renders).
#
#   bash results/base_study/device_session.sh start ROOT [study.py flags...]
#   bash results/base_study/device_session.sh poll  ROOT [seconds to wait first]
#   bash results/base_study/device_session.sh pack  ROOT OUT_DIR
#
# start: copies the tree to ROOT/code (a later call's fresh checkout cannot disturb the run),
# then in the background: the CUDA-only tests of the probe path (tracking heads under CUDA
# graphs, span resampling), `study.py --root ROOT` (every stage), then, if both WALT runs were
# pretrained, `bitwise.py` (the pretraining recipes twice each, deterministic, sha256 compared)
# alone on the GPU (BITWISE_ARGS: extra bitwise.py flags; BITWISE=0 skips it); with
# CALIBRATE_SMALL=1, after the study, calibrate.py times the shipped `small` WALT recipe eager
# and compiled at batch 64 and 512; with CALIBRATE_40M=1, then the study's 40m WALT compiled at
# batch 512 (twice the study's). Logs: ROOT/session.log, ROOT/run.log, ROOT/cuda_tests.log, ROOT/bitwise.log.
set -uo pipefail
cmd=${1:?start, poll or pack}
root=${2:?ROOT}
shift 2
here=$(cd "$(dirname "$0")/../.." && pwd)

case $cmd in
  start)
    mkdir -p "$root"
    root=$(cd "$root" && pwd)
    rm -rf "$root/code" && mkdir -p "$root/code"
    # The sources only: what git tracks or would track here; without git (the lent machine's
    # copy), the tree less environments, wheels and run outputs.
    if git -C "$here" rev-parse --is-inside-work-tree > /dev/null 2>&1; then
      (cd "$here" && git ls-files -co --exclude-standard -z | tar --null -cf - -T - 2> /dev/null) \
        | tar xf - -C "$root/code"
    else
      (cd "$here" && tar cf - --exclude=./.git --exclude=./runs --exclude=./.venv --exclude=./.whl \
        --exclude='./.ray*' --exclude=./.hypothesis --exclude=./.pytest_cache .) | tar xf - -C "$root/code"
    fi
    : > "$root/study_flags"
    [ $# -gt 0 ] && printf '%q ' "$@" > "$root/study_flags"
    setsid bash -c "
      cd '$root/code'
      export PYTHONUNBUFFERED=1
      echo \"\$(date +%T) session start\" >> '$root/session.log'
      python -m pytest -q -p no:cacheprovider tests/readouts/test_matching.py tests/readouts/test_resample_spans.py \
        -k cuda > '$root/cuda_tests.log' 2>&1 &
      bash results/base_study/run.sh '$root' $(cat "$root/study_flags")
      rc=\$?; echo \"\$(date +%T) study exit \$rc\" >> '$root/session.log'
      # After the study, alone on the GPU: beside the probes (run 4) it ran out of memory.
      if [ '${BITWISE:-1}' = 1 ] && [ -f '$root/done/iwalt' ] && [ -f '$root/done/vwalt' ]; then
        echo \"\$(date +%T) bitwise start\" >> '$root/session.log'
        python results/base_study/bitwise.py --root '$root/bitwise' --steps 60 \
          --pool '$root/pool' ${BITWISE_ARGS:-} > '$root/bitwise.log' 2>&1
        rc=\$?; echo \"\$(date +%T) bitwise exit \$rc\" >> '$root/session.log'
      fi
      if [ '${CALIBRATE_SMALL:-0}' = 1 ]; then   # the shipped small recipe: eager vs compiled, two batches
        for c in 0 1; do
          python results/base_study/calibrate.py --out '$root/calibrate_small_c'\$c.json --skip_tokenizer \
            --walt_size small --latent_channels 8 --walt_batch 64 512 --compile \$c >> '$root/calibrate.log' 2>&1
        done
        echo \"\$(date +%T) calibrate done\" >> '$root/session.log'
      fi
      if [ '${CALIBRATE_40M:-0}' = 1 ]; then   # the study's 40m WALT compiled at twice its batch
        python results/base_study/calibrate.py --out '$root/calibrate_40m_b512.json' --skip_tokenizer \
          --walt_size 40m --walt_batch 512 --compile 1 >> '$root/calibrate.log' 2>&1
        echo \"\$(date +%T) calibrate 40m done\" >> '$root/session.log'
      fi
      wait
      echo \"\$(date +%T) session end\" >> '$root/session.log'
    " > "$root/session.out" 2>&1 < /dev/null &
    echo "started; poll with: bash results/base_study/device_session.sh poll $root" ;;
  poll)
    sleep "${1:-0}"
    echo "== session.log"; cat "$root/session.log" 2>/dev/null
    echo "== study.log (tail)"; tail -n 25 "$root/study.log" 2>/dev/null
    echo "== cuda tests"; tail -n 3 "$root/cuda_tests.log" 2>/dev/null
    echo "== bitwise"; tail -n 6 "$root/bitwise.log" 2>/dev/null
    echo "== calibrate"; grep -h '"model"' "$root/calibrate.log" 2>/dev/null | cut -c1-220
    echo "== probes: $(ls "$root"/probes/*/result.json 2>/dev/null | wc -l) results, failed: \
$(grep -l '"status": "failed"' "$root"/probes/*/result.json 2>/dev/null | wc -l)"
    nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>/dev/null
    uptime ;;
  pack)
    out=${1:?OUT_DIR}
    mkdir -p "$out"
    # The checkpoints stay behind (too large to carry): their digests come back.
    (cd "$root" && find tokenizer iwalt vwalt bitwise -path '*/export/*.safetensors' 2>/dev/null \
      | sort | xargs -r sha256sum > checkpoints_sha256_device.txt)
    (cd "$root" && tar czf "$out/study_run.tgz" --exclude='*.safetensors' --exclude='*.pt' \
      --exclude='*.ckpt' --exclude='./pool' --exclude='./synthetic' --exclude='./cache' \
      --exclude='./code' --exclude='*/checkpoints' --exclude='./bitwise/pool' \
      --exclude='./bitwise/*_[AB]' .)
    # A call brings back files of at most 16 MiB (run 6's archive was 22 MB): larger ones in
    # parts; here: cat "$out"/study_run.tgz.part_* > study_run.tgz
    if [ "$(stat -c %s "$out/study_run.tgz")" -gt $((15 * 1024 * 1024)) ]; then
      split -b 15M "$out/study_run.tgz" "$out/study_run.tgz.part_" && rm "$out/study_run.tgz"
    fi
    ls -la "$out" ;;
  *)
    echo "device_session.sh: unknown command '$cmd' (start, poll or pack)" >&2; exit 2 ;;
esac
