#!/usr/bin/env bash
# CPU benchmark: einc (release, benches/cpu.rs) and its Python peers, same machine, same
# script, threads 1 and 2. Installs the peers into its own venv. Writes the joined table
# to stdout (markdown) and the raw JSON lines to target/bench-cpu/.
# Usage: benches/cpu.sh [FILTER]
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
suite=../shared/workloads/cpu_suite.json
cargo bench --bench cpu -- ${1:-} > "$out/einc.jsonl"
for t in 1 2; do
  # OPENBLAS_CORETYPE/L2_SIZE pin old kernels on this machine; a current numpy is faster
  # without them (see the env notes), so the peers run with both unset.
  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE EINC_BENCH_THREADS=$t "$venv/bin/python" benches/cpu_peers.py "$suite" ${1:-} > "$out/peers_$t.jsonl"
done
"$venv/bin/python" benches/cpu_table.py "$out"
