#!/usr/bin/env bash
# One GPU session in a fixed wall-time budget: the CUDA tests and benchmarks/gpu.py, then
# the paper-scale queue advanced with whatever time is left, every result under OUT.
#
#   OUT=/tmp/gpu BUDGET_S=540 bash scripts/gpu_session.sh
#
# DEVICE=cpu rehearses the whole call on a machine without a GPU (the benchmark then fails).
# Expects the CIFAR-10 JPEG copy packed as .carry/cifar10-jpeg.tar.xz (scripts/pack_cifar.sh)
# and, for the AutoAttack test, pyautoattack importable (for example from .carry/site).
# Bring the runs back with: for f in OUT/*.tar; do tar -xf "$f" -C results/paper; done
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:?set OUT to an output folder}
BUDGET_S=${BUDGET_S:-540}      # the whole script, start to end
BENCH_S=${BENCH_S:-330}        # benchmarks/gpu.py at most
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src:$PWD/.carry/site${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
start=$(date +%s)
elapsed() { echo $(( $(date +%s) - start )); }

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
# the CIFAR-10 JPEG copy as a zip at the path the plans name (../shared/data/cifar10-jpeg.zip)
python3 scripts/gpu_step.py --pack .carry/cifar10-jpeg.tar.xz --max-minutes 0
python3 -c "import pni; [pni.load_dataset('imagefolder', s, '../shared/data/cifar10-jpeg.zip') for s in ('train', 'test')]"
echo "[session] data ready after $(elapsed) s"

timeout "$BENCH_S" python3 benchmarks/gpu.py --out "$OUT/bench" --data ../shared/data/cifar10-jpeg.zip --compile \
    2>&1 | tee "$OUT/bench.log"
echo "[session] benchmark done after $(elapsed) s"

left=$(( BUDGET_S - $(elapsed) - 20 ))
if [ "$left" -gt 45 ]; then
    minutes=$(python3 -c "print(round(($left - 25) / 60, 2))")
    timeout "$left" python3 scripts/gpu_step.py --device "${DEVICE:-cuda}" --max-minutes "$minutes" 2>&1 | tee "$OUT/step.log"
fi
for folder in results/paper/*/; do
    name=$(basename "$folder")
    [ -f "$folder/checkpoint.pt" ] && tar -cf "$OUT/$name.tar" -C results/paper \
        "$name/checkpoint.pt" "$name/config.json" "$name/train_log.jsonl"
done
echo "[session] done after $(elapsed) s"
ls -la "$OUT" "$OUT/bench" 2>/dev/null
