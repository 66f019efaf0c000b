#!/bin/bash
# Benchmark cards (docs/BENCHMARK.md) for pni's pretrained cpu-scale checkpoints (pni.models.hub.REGISTRY).
#   scripts/make_cards.sh BUDGET N NAME...      e.g. scripts/make_cards.sh full 1000 lenet5-pni-w
# writes results/cards/NAME-cpu.json (pni.models.hub.card_path: the card the checkpoint earned) and re-renders
# results/cards/LEADERBOARD.md. BUDGET full and N 1000 are the protocol itself. Runs from the
# repository root, so that each card names its committed checkpoint by its relative path; a
# stopped run resumes from results/cards/.work/NAME (git-ignored) when started again.
# MNIST / CIFAR-10 data: PNI_DATA as for pni eval. DEVICE (default cpu) runs them elsewhere, e.g.
# cuda (scripts/gpu_session.sh: CARDS=...); PYTHON names the interpreter (default python).
set -euo pipefail
budget=$1; n=$2; shift 2
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
for name in "$@"; do
  read -r ckpt card < <($PYTHON -c "from pni.models.hub import card_path, pretrained_entry as p; print(p('$name').path, card_path('$name'))")
  out="results/cards/.work/$name"
  $PYTHON -m pni eval "$ckpt" --benchmark pni-honest-v1 --budget "$budget" --num-images "$n" --name "$name" \
    --out "$out" --device "${DEVICE:-cpu}"
  cp "$out/card.json" "$card"
done
$PYTHON -m pni leaderboard results/cards/*.json --out results/cards/LEADERBOARD.md \
  --title "pni benchmark cards (cpu-scale checkpoints)"
