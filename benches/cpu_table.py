"""Joins benches/cpu.rs output with the Python peers' into the markdown table of
docs/benchmarks.md. Usage: cpu_table.py DIR (the folder benches/cpu.sh writes)."""
import json, sys, math, glob, os
out = sys.argv[1]
raw = [json.loads(l) for l in open(f"{out}/einc.jsonl")]


def med(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


# benches/cpu.sh runs every case in several rounds: one row per round. Join them into one
# row per (case, threads): the median of the rounds' medians, and their spread.
def join(rows, key, fields):
    groups = {}
    for r in rows:
        groups.setdefault(key(r), []).append(r)
    joined = []
    for k, rs in groups.items():
        j = dict(rs[-1])
        for f in fields:
            vals = [r[f] for r in rs if isinstance(r.get(f), (int, float))]
            if vals:
                j[f] = med(vals)
                j[f + "_rounds"] = vals
        joined.append(j)
    return joined


einc = [r for r in raw if r["kind"] not in ("case", "memory")]
einc += join([r for r in raw if r["kind"] == "case"], lambda r: (r["name"], r["threads"]), ["einc_ms", "gemm_crate_ms", "gemm_crate_fresh_ms"])
einc += join([r for r in raw if r["kind"] == "memory"], lambda r: r["name"], [])
peer_rows = []
env = []
for f in sorted(glob.glob(f"{out}/peers_*.jsonl")):
    for l in open(f):
        r = json.loads(l)
        if r["kind"] == "peers":
            peer_rows.append(r)
        elif r not in env:
            env.append(r)
peers = {(r["name"], r["threads"]): r
         for r in join(peer_rows, lambda r: (r["name"], r["threads"]), ["numpy_ms", "opt_einsum_ms", "torch_ms"])}
for r in einc:
    if r["kind"] == "einc_env":
        print(f"einc GEMM backend: {r['gemm_backend']}\n")
    if r["kind"] == "cached_call_2x2":
        print(f"cached einc::einsum call, 2x2 f64 matmul: {r['us_per_call']:.2f} us per call; "
              f"compiled Expression::run {r.get('us_compiled_expression', float('nan')):.2f} us; "
              f"contract_pair kernel alone {r.get('us_kernel_only', float('nan')):.2f} us; "
              f"overhead beyond the kernel {r.get('us_overhead_beyond_kernel', float('nan')):.2f} us\n")
print("| case | threads | einc ms | numpy ms | opt_einsum ms | torch ms | best peer / einc | per round (best peer / einc) | einc GFLOP/s | gemm crate ms (output reused / fresh) | einc / gemm speed (reused / fresh) |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
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
    # The same ratio per round (rounds run einc and the peers back to back).
    per_round = []
    for i, e in enumerate(r.get("einc_ms_rounds", [])):
        pr = [p.get(k + "_rounds", [])[i] for k in ("numpy_ms", "opt_einsum_ms", "torch_ms")
              if i < len(p.get(k + "_rounds", []))]
        if pr:
            per_round.append(f"{min(pr) / e:.2f}")
    g, gf = r.get("gemm_crate_ms"), r.get("gemm_crate_fresh_ms")
    f = lambda x: f"{x:.3f}" if isinstance(x, (int, float)) else "—"
    print(f"| {r['name']} | {r['threads']} | {f(r['einc_ms'])} | {f(p.get('numpy_ms'))} | {f(p.get('opt_einsum_ms'))} | {f(p.get('torch_ms'))} | {ratio:.2f} | {' / '.join(per_round) or '—'} | {r['flops']/r['einc_ms']/1e6:.1f} | {f(g)}{' / ' + f(gf) if gf else ''} | {f(g / r['einc_ms']) if g else '—'}{' / ' + f(gf / r['einc_ms']) if gf else ''} |")
gm = math.exp(sum(map(math.log, speedups_np)) / len(speedups_np)) if speedups_np else float("nan")
print(f"\neinc faster than the best peer in {wins} of {total} (case, threads) rows; geometric-mean speed-up over numpy.einsum(optimize='optimal'): {gm:.2f}x")
for e in env:
    print(f"peers at {e['threads']} thread(s): numpy {e['numpy']}, opt_einsum {e['opt_einsum']}, torch {e['torch']}, BLAS {e['blas']}")
mem = [r for r in einc if r["kind"] == "memory"]
if mem:
    print("\n| case | executor peak (inputs + live arrays) | heap peak (inputs + every allocation) | chunked run's heap peak | plan bound (largest intermediate + inputs + output) | within bound (executor / heap / chunked) | largest step's working set + inputs + output | executor within it |")
    print("|---|---|---|---|---|---|---|---|")
    for r in mem:
        ok = r["peak_bytes"] <= r["bound_bytes"]
        hp = r.get("heap_peak_bytes", float("nan"))
        ok_h = hp <= r["bound_bytes"]
        ch = r.get("chunked_heap_peak_bytes")
        ch_s, ok_c = ("—", "—") if ch is None else (f"{ch:.0f}", "yes" if ch <= r["bound_bytes"] else "no")
        sb = r.get("step_bound_bytes")
        sb_s, ok_s = ("—", "—") if sb is None else (f"{sb:.0f}", "yes" if r["peak_bytes"] <= sb else "no")
        print(f"| {r['name']} | {r['peak_bytes']:.0f} | {hp:.0f} | {ch_s} | {r['bound_bytes']:.0f} | {'yes' if ok else 'no'} / {'yes' if ok_h else 'no'} / {ok_c} | {sb_s} | {ok_s} |")
