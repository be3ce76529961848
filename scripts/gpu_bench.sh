#!/usr/bin/env bash
# GPU benchmark: einc's wgpu executor (benches/gpu.rs, built beforehand) and, when PyTorch
# with CUDA is present, torch.einsum on the same shapes, in one script. Needs nothing built
# on the GPU machine: build with `cargo bench --bench gpu --no-run` and pass the binary.
# Prints a markdown table (einc ms, torch ms, speed ratio, TFLOP/s, sampled error).
# Usage: scripts/gpu_bench.sh [BENCH_BINARY] [SUITE_JSON] [OUT_DIR]
set -uo pipefail
cd "$(dirname "$0")/.."
bin=${1:-$(ls -t target/release/deps/gpu-* 2>/dev/null | grep -v '\.d$' | head -1)}
suite=${2:-../shared/workloads/gpu_suite.json}
out=${3:-target/bench-gpu}
mkdir -p "$out"
if [ -z "$bin" ] || [ ! -x "$bin" ]; then
  echo "no bench binary: run cargo bench --bench gpu --no-run first" >&2
  exit 2
fi
"$bin" "$suite" > "$out/einc.jsonl" || { echo "einc bench failed" >&2; cat "$out/einc.jsonl"; exit 1; }
: > "$out/torch.jsonl"
if python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  python3 benches/gpu_torch.py "$suite" > "$out/torch.jsonl" || echo "torch peer failed" >&2
else
  echo "PyTorch with CUDA not available: torch column left out" >&2
fi
python3 benches/gpu_table.py "$out/einc.jsonl" "$out/torch.jsonl"
