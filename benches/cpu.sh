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
"$venv/bin/python" - "$out" <<'PY'
import json, sys, math, glob, os
out = sys.argv[1]
einc = [json.loads(l) for l in open(f"{out}/einc.jsonl")]
peers = {}
env = []
for f in sorted(glob.glob(f"{out}/peers_*.jsonl")):
    for l in open(f):
        r = json.loads(l)
        if r["kind"] == "peers":
            peers[(r["name"], r["threads"])] = r
        else:
            env.append(r)
for r in einc:
    if r["kind"] == "cached_call_2x2":
        print(f"cached einc::einsum call, 2x2 matmul: {r['us_per_call']:.2f} us per call\n")
print("| case | threads | einc ms | numpy ms | opt_einsum ms | torch ms | best peer / einc | einc GFLOP/s | gemm crate ms | einc / gemm speed |")
print("|---|---|---|---|---|---|---|---|---|---|")
speedups_np, wins, total = [], 0, 0
for r in einc:
    if r["kind"] != "case" or "einc_ms" not in r:
        continue
    p = peers.get((r["name"], r["threads"]), {})
    cand = [p.get(k) for k in ("numpy_ms", "opt_einsum_ms", "torch_ms") if p.get(k)]
    best = min(cand) if cand else float("nan")
    ratio = best / r["einc_ms"]
    total += 1
    wins += ratio > 1.0
    if p.get("numpy_ms"):
        speedups_np.append(p["numpy_ms"] / r["einc_ms"])
    g = r.get("gemm_crate_ms")
    f = lambda x: f"{x:.3f}" if isinstance(x, (int, float)) else "—"
    print(f"| {r['name']} | {r['threads']} | {f(r['einc_ms'])} | {f(p.get('numpy_ms'))} | {f(p.get('opt_einsum_ms'))} | {f(p.get('torch_ms'))} | {ratio:.2f} | {r['flops']/r['einc_ms']/1e6:.1f} | {f(g)} | {f(g / r['einc_ms']) if g else '—'} |")
gm = math.exp(sum(map(math.log, speedups_np)) / len(speedups_np)) if speedups_np else float("nan")
print(f"\neinc faster than the best peer in {wins} of {total} (case, threads) rows; geometric-mean speed-up over numpy.einsum(optimize='optimal'): {gm:.2f}x")
for e in env:
    print(f"peers at {e['threads']} thread(s): numpy {e['numpy']}, opt_einsum {e['opt_einsum']}, torch {e['torch']}, BLAS {e['blas']}")
PY
