#!/usr/bin/env bash
# Run every omnifuse benchmark at one size and keep each command's JSON line in bench/results/<size>/.
# Usage: bench/run_all.sh [tiny|small|large] [extra flags for every command]
# Each benchmark alternates omnifuse and its baseline in one process; see README "Benchmarks".
set -euo pipefail
size="${1:-small}"
shift || true
out="$(dirname "$0")/results/${size}"
mkdir -p "$out"
omnifuse="${OMNIFUSE:-omnifuse}"
for task in preprocess generate train scaling; do
  echo "== omnifuse bench ${task} --size ${size} $*" >&2
  "$omnifuse" bench "$task" --size "$size" "$@" | tail -n 1 | tee "$out/${task}.json"
done
