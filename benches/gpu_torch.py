"""torch.einsum peer for scripts/gpu_bench.sh: f32 on CUDA, TF32 off, median of 20
CUDA-event timings after 3 warm-ups; one JSON object per line."""
import json
import sys

import torch

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
suite = json.load(open(sys.argv[1]))
flt = sys.argv[2] if len(sys.argv) > 2 else ""
dev = torch.device("cuda")
print(json.dumps({"torch": torch.__version__, "device": torch.cuda.get_device_name(0)}))
for case in suite:
    if flt not in case["name"]:
        continue
    lhs = case["eq"].split("->")[0]
    sizes = case["sizes"]
    g = torch.Generator(device=dev).manual_seed(0)
    ops = [torch.rand([sizes[c] for c in t], device=dev, generator=g) - 0.5 for t in lhs.split(",")]
    for _ in range(3):
        torch.einsum(case["eq"], *ops)
    torch.cuda.synchronize()
    times = []
    for _ in range(20):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        torch.einsum(case["eq"], *ops)
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    times.sort()
    print(json.dumps({"name": case["name"], "ms": times[len(times) // 2]}), flush=True)
