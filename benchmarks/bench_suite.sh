#!/usr/bin/env bash
# The suite's wall time alone and under load (issue 18): CI's command (`bash .ci/run`, that is `make test`) in a
# fresh clone, once alone, then in two fresh clones at once. Each clone sets up its own .venv first (`make
# setup-lm`, timed apart: pip's cache makes it short after the first), so the times printed are those of the
# docs build, the suite and the notebooks, as CI runs them after its set-up. Goal: under about 15 minutes alone.
#   bash benchmarks/bench_suite.sh           # clones this checkout's HEAD into a temporary folder, removed after
#   KEEP=1 bash benchmarks/bench_suite.sh    # keeps the clones: each one's setup.log and make-test.log
# Run it on a machine where nothing else runs: the load average beside each phase is printed with its time.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/alignlab-bench-suite.XXXXXX")
[ -n "${KEEP:-}" ] || trap 'rm -rf "$work"' EXIT

load() { cut -d' ' -f1 /proc/loadavg; }

setup() {  # $1: the clone's name
  git clone -q "$repo" "$work/$1"
  local start=$SECONDS
  (cd "$work/$1" && make setup-lm > setup.log 2>&1) || { echo "set-up of $1 failed: $work/$1/setup.log"; exit 1; }
  echo "set-up $1: $((SECONDS - start)) s"
}

suite() {  # $1: the clone's name; writes "<seconds> <exit status> <pytest's last line>" to $work/$1.time
  local start=$SECONDS rc=0
  (cd "$work/$1" && bash .ci/run > make-test.log 2>&1) || rc=$?
  echo "$((SECONDS - start)) $rc $(grep -E '(passed|failed|error)' "$work/$1/make-test.log" | tail -1)" > "$work/$1.time"
}

report() {  # $1: the phase, $2: the clone's name, $3 $4: the load average at the phase's start and end
  read -r seconds rc summary < "$work/$2.time"
  printf '%-26s %4d min %02d s  exit %d  load %s -> %s  %s\n' "$1 ($2)" $((seconds / 60)) $((seconds % 60)) \
    "$rc" "$3" "$4" "$summary"
}

echo "alignlab suite timing: $(git -C "$repo" rev-parse --short HEAD), $(nproc) CPUs, $(date -u '+%Y-%m-%d %H:%M UTC')"
setup a
setup b

before=$(load)
suite a
report "alone" a "$before" "$(load)"

before=$(load)
suite a &
first=$!
suite b &
second=$!
wait "$first" "$second" || true
after=$(load)
report "two copies at once" a "$before" "$after"
report "two copies at once" b "$before" "$after"
