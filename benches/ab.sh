#!/usr/bin/env bash
# A/B timing of two builds of the CPU benchmark binary on one case, alternating runs so that
# both see the same drift of this VM. Save each build's binary first, e.g.
#   cargo bench --bench cpu --no-run && cp "$(ls -t target/release/deps/cpu-* | grep -v '\.d$' | head -1)" /tmp/cpu_A
# Usage: benches/ab.sh BIN_A BIN_B CASE THREADS [ROUNDS]   (ROUNDS default 3)
# Prints each binary's median einc time over the rounds and every round's value (ms).
set -euo pipefail
a=$1 b=$2 case=$3 threads=$4 rounds=${5:-3}
for _ in $(seq "$rounds"); do
  for bin in "$a" "$b"; do
    ms=$(EINC_BENCH_CACHED=0 EINC_BENCH_THREADS=$threads "$bin" "=$case" 2>/dev/null \
      | grep '"einc_ms"' | sed 's/.*"einc_ms":\([0-9.e+-]*\).*/\1/')
    echo "$bin $ms"
  done
done | python3 -c '
import statistics, sys
runs = {}
for line in sys.stdin:
    k, v = line.split()
    runs.setdefault(k, []).append(float(v))
def show(k, v):
    vals = " ".join("%.2f" % x for x in v)
    return "%s: median %.3f [%s]" % (k, statistics.median(v), vals)
print(sys.argv[1], sys.argv[2] + "T", "  ".join(show(k, v) for k, v in runs.items()))
' "$case" "$threads"
