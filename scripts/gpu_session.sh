#!/usr/bin/env bash
# One GPU session in a fixed wall-time budget: the cuda tests of the code that changed since
# they last passed, benchmarks/concurrency.py (aggregate images/s of K = 1, 2, 4, 9 runs at
# once, TF32 and bf16; CONC_S), optionally benchmarks/gpu.py (BENCH_S > 0), optionally the cpu-scale
# CIFAR track of pni reproduce (CPU_TRACK_S > 0: its honest evaluations at the published
# AutoAttack budget take 40 CPU-hours here and minutes on a GPU; the steps it finishes come back
# in OUT/cpu_track.tar, same keys as on a CPU), then the paper-scale runs of
# Tables 2 and 1 advanced with whatever time is left (before them, optionally, benchmark cards of
# pretrained cpu-scale checkpoints: CARDS="resnet20-pni-w ..." and CARDS_S > 0; a card not finished
# in time resumes from the attacks it finished, which come back in OUT/cards.tar with the cards), CONCURRENT of them at once in one
# process (default auto: free GiB // 4, at most 9), every result under OUT.
#
#   OUT=/tmp/gpu BUDGET_S=540 bash scripts/gpu_session.sh
#
# DEVICE=cpu SCALE=smoke RUNS=/tmp/runs rehearses the whole call on a machine without a GPU
# (the cuda tests then skip). PYTHON names the interpreter (default python3).
# Expects the CIFAR-10 JPEG copy packed as .carry/cifar10-jpeg.tar.xz (scripts/pack_cifar.sh)
# and, for the AutoAttack test, pyautoattack importable (for example from .carry/site).
# Bring the runs back with: for f in OUT/*.tar; do tar -xf "$f" -C results/paper; done
# (and OUT/cpu_track.tar with: tar -xf OUT/cpu_track.tar -C results/cpu; OUT/cards.tar with
# tar -xf OUT/cards.tar -C results/cards; pni.models.hub.earned_card finds each new card there)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:?set OUT to an output folder}
BUDGET_S=${BUDGET_S:-540}      # the whole script, start to end
BENCH_S=${BENCH_S:-0}          # benchmarks/gpu.py at most (0: skipped; it was measured twice)
TESTS_S=${TESTS_S:-120}        # the cuda tests at most
CONC_S=${CONC_S:-150}          # benchmarks/concurrency.py at most (0: skipped): aggregate img/s of K runs at once
CPU_TRACK_S=${CPU_TRACK_S:-0}  # pni reproduce CPU_TRACK_PLAN --scale cpu --track cifar10-jpeg at most (0: skipped)
CPU_TRACK_PLAN=${CPU_TRACK_PLAN:-table2}
CPU_RUNS=${CPU_RUNS:-results/cpu}   # its results folder
CARDS=${CARDS:-}               # pretrained names whose benchmark cards to make (scripts/make_cards.sh)
CARDS_S=${CARDS_S:-0}          # the cards at most (0: skipped)
CARDS_BUDGET=${CARDS_BUDGET:-full}; CARDS_N=${CARDS_N:-1000}   # the protocol's own (smoke / 20 to rehearse)
CONCURRENT=${CONCURRENT:-auto} # runs trained at once (scripts/gpu_step.py --concurrent)
DEVICE=${DEVICE:-cuda}
SCALE=${SCALE:-paper}
RUNS=${RUNS:-results/paper}    # the run folders (pni reproduce --out)
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src:$PWD/.carry/site${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
start=$(date +%s)
elapsed() { echo $(( $(date +%s) - start )); }

nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv,noheader || true
$PYTHON -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
# the CIFAR-10 JPEG copy as a zip at the path the plans name (../shared/data/cifar10-jpeg.zip)
if [ "$SCALE" = paper ]; then
    $PYTHON scripts/gpu_step.py --pack .carry/cifar10-jpeg.tar.xz --max-minutes 0
    $PYTHON -c "import pni; [pni.load_dataset('imagefolder', s, '../shared/data/cifar10-jpeg.zip') for s in ('train', 'test')]"
fi
echo "[session] data ready after $(elapsed) s"

# the cuda tests, only when the code they test changed since they last passed here
tested=$(cat src/pni/training/*.py src/pni/config.py src/pni/noise.py tests/test_cuda.py \
         tests/test_concurrent.py tests/test_precision.py | sha256sum | cut -c1-16)
if [ "$(cat results/gpu/cuda_tests_passed 2>/dev/null)" != "$tested" ]; then
    timeout "$TESTS_S" $PYTHON -m pytest -q -m cuda tests/test_concurrent.py tests/test_precision.py tests/test_cuda.py \
        2>&1 | tee "$OUT/cuda_tests.log"
    if [ "${PIPESTATUS[0]}" = 0 ] && [ "$DEVICE" != cpu ]; then echo "$tested" > "$OUT/cuda_tests_passed"; fi
    echo "[session] cuda tests done after $(elapsed) s"
else
    echo "[session] cuda tests skipped: the code under test passed them before ($tested)"
fi

if [ "$CONC_S" -gt 0 ]; then
    small=""; [ "$DEVICE" = cpu ] && small="--model lenet5 --images 256 --ks 1,2 --precisions float32"
    timeout "$CONC_S" $PYTHON benchmarks/concurrency.py --out "$OUT/concurrency" --device "$DEVICE" $small \
        2>&1 | tee "$OUT/concurrency.log"
    echo "[session] concurrency benchmark done after $(elapsed) s"
fi

if [ "$BENCH_S" -gt 0 ]; then
    timeout "$BENCH_S" $PYTHON benchmarks/gpu.py --out "$OUT/bench" --data ../shared/data/cifar10-jpeg.zip --compile \
        2>&1 | tee "$OUT/bench.log"
    echo "[session] benchmark done after $(elapsed) s"
fi

if [ "$CPU_TRACK_S" -gt 0 ]; then
    touch "$OUT/.cpu_track_start"
    minutes=$($PYTHON -c "print(round(max($CPU_TRACK_S - 60, 30) / 60, 2))")  # no new step in the last minute
    timeout -k 15 "$CPU_TRACK_S" $PYTHON -m pni reproduce "$CPU_TRACK_PLAN" --scale cpu --track cifar10-jpeg \
        --device "$DEVICE" --out "$CPU_RUNS" --max-minutes "$minutes" 2>&1 | tee "$OUT/cpu_track.log"
    (cd "$CPU_RUNS" && find . -type f -newer "$OUT/.cpu_track_start" ! -name .running ! -name '*.tmp' -print0 \
        | tar --null -cf "$OUT/cpu_track.tar" -T -)
    echo "[session] cpu-scale track done after $(elapsed) s: $(tar -tf "$OUT/cpu_track.tar" | wc -l) files in cpu_track.tar"
fi

if [ "$CARDS_S" -gt 0 ] && [ -n "$CARDS" ]; then
    touch "$OUT/.cards_start"
    DEVICE=$DEVICE PYTHON=$PYTHON timeout -k 15 "$CARDS_S" bash scripts/make_cards.sh "$CARDS_BUDGET" "$CARDS_N" $CARDS \
        2>&1 | tee "$OUT/cards.log"
    (cd results/cards && find . -type f -newer "$OUT/.cards_start" ! -name '*.tmp' -print0 \
        | tar --null -cf "$OUT/cards.tar" -T -)
    echo "[session] cards done after $(elapsed) s: $(tar -tf "$OUT/cards.tar" | wc -l) files in cards.tar"
fi

left=$(( BUDGET_S - $(elapsed) - 20 ))
if [ "$left" -gt 45 ]; then
    minutes=$($PYTHON -c "print(round(($left - 30) / 60, 2))")
    # SIGTERM 15 s before the end: every run writes a mid-epoch checkpoint and stops
    timeout -k 15 "$left" $PYTHON scripts/gpu_step.py --device "$DEVICE" --scale "$SCALE" --out "$RUNS" \
        --concurrent "$CONCURRENT" --max-minutes "$minutes" 2>&1 | tee "$OUT/step.log"
fi
nvidia-smi --query-gpu=memory.used --format=csv,noheader 2>/dev/null || true
for folder in "$RUNS"/*/; do
    name=$(basename "$folder")
    [ -f "$folder/checkpoint.pt" ] && tar -cf "$OUT/$name.tar" -C "$RUNS" \
        "$name/checkpoint.pt" "$name/config.json" "$name/train_log.jsonl" \
        $(cd "$RUNS" && ls "$name/timing.json" 2>/dev/null)
done
echo "[session] done after $(elapsed) s"
ls -la "$OUT" "$OUT/bench" 2>/dev/null
