# fp32 square matmul GFLOP/s with PyTorch, run by matmul.ts as a child process:
#   python3 torch-matmul.py <sizes,comma-separated> <threads,comma-separated> <trials> <min_seconds>
# Prints one JSON object: torch version, the BLAS libraries mapped into the process, a probe of the BLAS
# speed (512^3 on one thread), and GFLOP/s per thread count and size (median of the trials).
import json, statistics, sys, time

import torch

sizes = [int(x) for x in sys.argv[1].split(",")]
threads = [int(x) for x in sys.argv[2].split(",")]
trials = int(sys.argv[3])
min_s = float(sys.argv[4])


def blas_libs():
    libs = set()
    for line in open("/proc/self/maps"):
        path = line.split()[-1]
        if "blas" in path or "mkl" in path:
            libs.add(path)
    return sorted(libs)


def bench(n):
    a = torch.randn(n, n)
    b = torch.randn(n, n)
    c = torch.empty(n, n)
    torch.mm(a, b, out=c)
    torch.mm(a, b, out=c)
    t0 = time.perf_counter()
    torch.mm(a, b, out=c)
    one = time.perf_counter() - t0
    iters = max(1, int(min_s / max(one, 1e-6)) + 1)
    ts = []
    for _ in range(trials):
        t0 = time.perf_counter()
        for _ in range(iters):
            torch.mm(a, b, out=c)
        ts.append((time.perf_counter() - t0) / iters)
    return 2 * n**3 / statistics.median(ts) / 1e9


torch.set_num_threads(1)
probe = bench(512)
out = {
    "torch": torch.__version__,
    "blas_info": [l.strip() for l in torch.__config__.show().splitlines() if "BLAS_INFO" in l],
    "blas_libs": blas_libs(),
    "probe_512_1t": probe,
    "results": {},
}
for th in threads:
    torch.set_num_threads(th)
    out["results"][str(th)] = {str(n): bench(n) for n in sizes}
print(json.dumps(out))
