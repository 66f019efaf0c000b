#!/bin/bash
# Benchmark cards (docs/BENCHMARK.md) for pni's pretrained checkpoints (pni.models.hub.REGISTRY).
#   scripts/make_cards.sh BUDGET N NAME...      e.g. scripts/make_cards.sh cpu 500 lenet5-pni-w lenet5-vanilla-at
# writes results/cards/NAME-cpu.json (the registry's card path) and re-renders
# results/cards/LEADERBOARD.md. BUDGET full and N 1000 are the protocol itself (a GPU's
# work for the ResNets); the committed CPU cards used "cpu 500" (written on each card).
# MNIST / CIFAR-10 data: PNI_DATA or --data-dir as for pni eval.
set -euo pipefail
budget=$1; n=$2; shift 2
root=$(cd "$(dirname "$0")/.." && pwd)
for name in "$@"; do
  ckpt=$(python -c "from pni.models.hub import pretrained_entry; print(pretrained_entry('$name').path)")
  out=$(mktemp -d)
  python -m pni eval "$root/$ckpt" --benchmark pni-honest-v1 --budget "$budget" --n "$n" --name "$name" --out "$out"
  mkdir -p "$root/results/cards"
  cp "$out/card.json" "$root/results/cards/$name-cpu.json"
done
python -m pni leaderboard "$root"/results/cards/*.json --out "$root/results/cards/LEADERBOARD.md" \
  --title "pni benchmark cards (cpu-scale checkpoints)"
