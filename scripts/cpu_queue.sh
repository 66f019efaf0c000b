#!/bin/bash
# Runs a queue of long, resumable commands (reproduce rows, benchmark cards) on this machine's
# cores, one torch thread each: WORKERS processes take the queue's lines in order, and a line
# that finishes is appended to QUEUE.done, so running the script again (after a stop, on the
# next day, on another machine with the same checkout) skips it and resumes the rest, each
# command from its own checkpoint or partial file.
#   scripts/cpu_queue.sh QUEUE [WORKERS]      (WORKERS default: the number of cores)
# QUEUE: one shell command per line, run from the repository root ('#' lines skipped), e.g.
#   python -m pni reproduce table5 --only b-a-a --track cifar10-jpeg --scale cpu
#   scripts/make_cards.sh full 1000 resnet20-pni-a-a
# Each line's output goes to QUEUE.logs/LINE_NUMBER.log. Two lines writing one card or one
# step would share a folder: one of them waits on its lock.
set -euo pipefail
queue=$(realpath "$1"); workers=${2:-$(nproc)}
cd "$(dirname "$0")/.."
done_file="$queue.done"; logs="$queue.logs"; lock="$queue.lock"
mkdir -p "$logs"; touch "$done_file"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PNI_THREADS=1

next_line() {  # the number of the next line nobody took (taken ones listed in $queue.taken)
  flock "$lock" bash -c '
    n=0
    while IFS= read -r line || [ -n "$line" ]; do
      n=$((n + 1))
      case "$line" in ""|"#"*) continue ;; esac
      grep -qxF "$n" "$1" "$2" 2>/dev/null && continue
      echo "$n" >> "$2"; echo "$n"; exit 0
    done < "$3"' _ "$done_file" "$queue.taken" "$queue"
}

worker() {
  while n=$(next_line) && [ -n "$n" ]; do
    command=$(sed -n "${n}p" "$queue")
    echo "$(date -u +%FT%TZ) worker $1: line $n: $command" >&2
    if bash -c "$command" > "$logs/$n.log" 2>&1; then
      flock "$lock" bash -c 'echo "$1" >> "$2"' _ "$n" "$done_file"
      echo "$(date -u +%FT%TZ) worker $1: line $n done" >&2
    else
      status=$?
      echo "$(date -u +%FT%TZ) worker $1: line $n failed (status $status; see $logs/$n.log)" >&2
    fi
  done
}

rm -f "$queue.taken"
for w in $(seq 1 "$workers"); do worker "$w" & done
wait
