"""Joins benches/gpu.rs and benches/gpu_torch.py output into a markdown table."""
import json
import sys


def load(path):
    rows = {}
    meta = {}
    try:
        for line in open(path):
            line = line.strip()
            if not line:
                continue
            r = json.loads(line)
            if "name" in r:
                rows[r["name"]] = r
            else:
                meta.update(r)
    except FileNotFoundError:
        pass
    return rows, meta


einc, emeta = load(sys.argv[1])
torch, tmeta = load(sys.argv[2]) if len(sys.argv) > 2 else ({}, {})
print(f"einc adapter: {emeta.get('adapter', '?')}; GEMM tile override: {emeta.get('tile')}")
if tmeta:
    print(f"torch {tmeta.get('torch')} on {tmeta.get('device')} (f32, TF32 off)")
print()
print("| case | einc ms | torch ms | einc speed / torch | einc TFLOP/s | torch TFLOP/s | max rel err (48 samples) | kernels |")
print("|---|---:|---:|---:|---:|---:|---:|---|")
for name, r in einc.items():
    if "error" in r:
        print(f"| {name} | error: {r['error']} | | | | | | |")
        continue
    t = torch.get(name, {}).get("ms")
    ratio = f"{t / r['ms']:.2f}" if t else "n/a"
    ttf = f"{r['flops'] / t / 1e9:.3g}" if t else "n/a"
    ts = f"{t:.3f}" if t else "n/a"
    kinds = ", ".join(k.split(":")[1] for k in r["kernels"])
    print(f"| {name} | {r['ms']:.3f} | {ts} | {ratio} | {r['tflops']:.3g} | {ttf} | {r['max_rel_err']:.1e} | {kinds} |")
