"""Python peers for the CPU benchmark: numpy.einsum(optimize='optimal'), opt_einsum.contract
and torch.einsum (when installed) on ../shared/workloads/cpu_suite.json, at the thread
count given by EINC_BENCH_THREADS (set before numpy loads, and through threadpoolctl).
Median of >= 5 runs after a warm-up, as benches/cpu.rs does. One JSON object per line."""
import json, os, sys, time

threads = int(os.environ.get("EINC_BENCH_THREADS", "1"))
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(threads)

import numpy as np  # noqa: E402
import opt_einsum as oe  # noqa: E402

try:
    from threadpoolctl import threadpool_limits, threadpool_info
    threadpool_limits(threads)
    blas = [(i.get("internal_api"), i.get("architecture"), i.get("num_threads")) for i in threadpool_info()]
except Exception:  # threadpoolctl is optional
    blas = []
try:
    import torch
    torch.set_num_threads(threads)
except Exception:
    torch = None


def timed(f, min_runs=5, min_time=1.0):
    f()
    times, start = [], time.perf_counter()
    while len(times) < min_runs or (time.perf_counter() - start < min_time and len(times) < 1000):
        t = time.perf_counter()
        f()
        times.append((time.perf_counter() - t) * 1e3)
    times.sort()
    return times[len(times) // 2]


def shapes_of(case):
    if "shapes" in case:
        return case["shapes"]
    eq = case["eq"]
    if "..." in eq:
        import re
        return [[int(d) for d in m.split(",")] for m in re.findall(r"\[([0-9,\s]+)\]", case["note"])]
    lhs = eq.split("->")[0]
    return [[case["sizes"][c] for c in t] for t in lhs.split(",")]


DT = {"f32": np.float32, "f64": np.float64, "c64": np.complex64, "c128": np.complex128}
suite = json.load(open(sys.argv[1]))
flt = sys.argv[2] if len(sys.argv) > 2 else None
# EINC_BENCH_SKIP: a JSON-lines file of earlier peer rows; a peer whose earlier median for
# the case and thread count was above EINC_BENCH_SKIP_MS (default 2000) is not run again
# (numpy's e3nn_fctp path takes 48 s per call; a second round of it adds nothing).
skip = set()
if os.environ.get("EINC_BENCH_SKIP") and os.path.exists(os.environ["EINC_BENCH_SKIP"]):
    limit = float(os.environ.get("EINC_BENCH_SKIP_MS", "2000"))
    for line in open(os.environ["EINC_BENCH_SKIP"]):
        r = json.loads(line)
        if r.get("kind") == "peers" and r.get("threads") == threads:
            for peer in ("numpy", "opt_einsum", "torch"):
                if r.get(f"{peer}_ms", 0) > limit:
                    skip.add((r["name"], peer))
print(json.dumps({"kind": "peers_env", "threads": threads, "numpy": np.__version__, "opt_einsum": oe.__version__,
                  "torch": getattr(torch, "__version__", None), "blas": blas}))
rng = np.random.default_rng(0)
for case in (suite["cases"] if isinstance(suite, dict) else suite):
    if flt and (case["name"] != flt[1:] if flt.startswith("=") else flt not in case["name"]):
        continue
    dt = DT[case["dtype"]]
    ops = []
    for s in shapes_of(case):
        a = rng.random(s) - 0.5
        if np.issubdtype(dt, np.complexfloating):
            a = a + 1j * (rng.random(s) - 0.5)
        ops.append(np.ascontiguousarray(a.astype(dt)))
    eq = case["eq"]
    row = {"kind": "peers", "name": case["name"], "threads": threads}
    name = case["name"]
    try:
        if (name, "numpy") not in skip:
            row["numpy_ms"] = timed(lambda: np.einsum(eq, *ops, optimize="optimal"))
    except Exception as e:  # numpy refuses non-ASCII labels and more than 52 of them
        row["numpy_error"] = str(e)[:80]
    expr = oe.contract_expression(eq, *[o.shape for o in ops])
    if (name, "opt_einsum") not in skip:
        row["opt_einsum_ms"] = timed(lambda: expr(*ops))
    if torch is not None and (name, "torch") not in skip:
        tops = [torch.from_numpy(o) for o in ops]
        try:
            row["torch_ms"] = timed(lambda: torch.einsum(eq, *tops))
        except Exception as e:  # torch rejects some equations (non-ASCII labels)
            row["torch_error"] = str(e)[:80]
    print(json.dumps(row), flush=True)
