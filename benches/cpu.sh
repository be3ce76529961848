#!/usr/bin/env bash
# CPU benchmark: einc (release, benches/cpu.rs) and its Python peers, same machine, same
# script, threads 1 and 2. Installs the peers into its own venv. Writes the joined table
# to stdout (markdown) and the raw JSON lines to target/bench-cpu/.
#
# The runs are interleaved case by case: for every case, einc and then the peers, then
# (round 2) the peers and then einc. This VM drifts between a fast and a slow state over
# minutes; running all of einc and then all of the peers compared the two sides in
# different states. The table gives the median over the rounds of each side's median.
# Usage: benches/cpu.sh [FILTER]   (FILTER: a substring of case names, or =NAME)
# EINC_BENCH_ROUNDS (default 2) sets the number of rounds. EINC_BENCH_BIN runs that saved
# bench binary (from `cargo bench --bench cpu --no-run`) instead of building, so that the
# sources can change while a long run goes on.
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/bench-cpu
mkdir -p "$out"
venv=${EINC_BENCH_VENV:-target/bench-venv}
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q numpy opt_einsum threadpoolctl
  # torch is optional: its PyPI wheel is large; go on without it if it does not install.
  timeout 900 "$venv/bin/pip" install -q torch || echo "torch not installed: torch column left out" >&2
fi
# EINC_BENCH_SUITE=FILE runs another suite of the same form (both sides read it).
suite=${EINC_BENCH_SUITE:-../shared/workloads/cpu_suite.json}
export EINC_BENCH_SUITE=$suite
rounds=${EINC_BENCH_ROUNDS:-2}
filter=${1:-}
rm -f "$out"/einc.jsonl "$out"/peers_*.jsonl
bench() {
  if [ -n "${EINC_BENCH_BIN:-}" ]; then "$EINC_BENCH_BIN" "$@"; else cargo bench --bench cpu -- "$@"; fi
}
[ -n "${EINC_BENCH_BIN:-}" ] || cargo bench --bench cpu --no-run 2>/dev/null
# The environment line and the cached-call measurement, once.
bench =no-such-case > "$out/einc.jsonl" 2>/dev/null
cases=$("$venv/bin/python" -c '
import json, sys
suite = json.load(open(sys.argv[1]))
f = sys.argv[2]
for c in (suite["cases"] if isinstance(suite, dict) else suite):
    n = c["name"]
    if not f or (n == f[1:] if f.startswith("=") else f in n):
        print(n)' "$suite" "$filter")
einc() {
  EINC_BENCH_CACHED=0 bench "=$1" 2>/dev/null | grep -v '"einc_env"' >> "$out/einc.jsonl"
}
peers() {
  for t in 1 2; do
    # OPENBLAS_CORETYPE/L2_SIZE pin old kernels on this machine; a current numpy is faster
    # without them (see the env notes), so the peers run with both unset.
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE EINC_BENCH_THREADS=$t \
      EINC_BENCH_SKIP="$out/peers_$t.jsonl" \
      "$venv/bin/python" benches/cpu_peers.py "$suite" "=$1" > "$out/peers_$t.part"
    cat "$out/peers_$t.part" >> "$out/peers_$t.jsonl"
  done
}
for c in $cases; do
  for r in $(seq 1 "$rounds"); do
    if [ $((r % 2)) = 1 ]; then einc "$c"; peers "$c"; else peers "$c"; einc "$c"; fi
  done
done
rm -f "$out"/peers_*.part
"$venv/bin/python" benches/cpu_table.py "$out"
