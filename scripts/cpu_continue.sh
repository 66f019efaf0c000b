#!/bin/bash
# Continues all the cpu-scale work this checkout has left, on WORKERS cores (default: all), one
# torch thread each, through scripts/cpu_queue.sh: first the unfinished steps of `pni reproduce
# all --scale cpu` (one process per worker, sharing results/cpu under its step locks, each
# resuming from its checkpoint or partial file), then a benchmark card (scripts/make_cards.sh,
# the full protocol on 1,000 images) for every pretrained cpu-scale model that has none yet,
# cheapest first. What is left is read from the checkout each time, so the same command goes on
# after a stop. Prints the queue, then runs it; the log of each line is in results/.queue.logs/.
# A second run on the same checkout while one works is refused (--dry-run only prints).
#   scripts/cpu_continue.sh [WORKERS] [--dry-run]   (--dry-run: print the queue only)
# PYTHON: the interpreter (default python).
set -euo pipefail
cd "$(dirname "$0")/.."
workers=$(nproc); dry_run=0
for arg in "$@"; do
  case "$arg" in --dry-run) dry_run=1 ;; *) workers=$arg ;; esac
done
export PYTHON=${PYTHON:-python}
queue=results/.queue
mkdir -p results
lines=$({
  for _ in $(seq 1 "$workers"); do
    echo "$PYTHON -m pni reproduce all --scale cpu --threads 1"
  done
  "$PYTHON" - <<'EOF'
from pni.models.hub import REGISTRY, earned_card
# activation noise doubles a pass's cost (pni.reproduce.estimate.noise_cost): those cards last
names = sorted((entry.path.count("A-") > 0, name) for (name, scale), entry in REGISTRY.items()
               if scale == "cpu" and earned_card(name, scale) is None)
for _, name in names:
    print(f"scripts/make_cards.sh full 1000 {name}")
EOF
})
echo "$lines"
[ "$dry_run" = 1 ] && exit 0
# one queue per checkout: held (inherited by the workers) until the last of them ends
exec 9> "$queue.run"
if ! flock -n 9; then
  echo "cpu_continue.sh: another run of it is working on this checkout ($queue.run is locked); let it finish or stop it first" >&2
  exit 1
fi
echo "$lines" > "$queue"
rm -f "$queue.done"  # what is done is the checkout's to say (steps and cards skip their finished work)
exec scripts/cpu_queue.sh "$queue" "$workers"
