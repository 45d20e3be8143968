"""Speed of the Numba ``learn`` kernel, against the plain NumPy reference, in one run.

For the nets 3-4-1, 16-32-1, 64-128-10 and 256-512-10 (logistic hidden and
output units, SSE loss, biases, lr 0.1; integer class labels for 10 outputs),
in float64 and float32, it prints:

- samples/s of ``MLP.learn`` on whole batches: median and best of ``--repeats``
  timings, each sized to take about 0.3 s, after a warm-up call; only the
  ``learn`` call is timed (inputs already in the net's dtype);
- samples/s of ``streammlp.reference.learn`` (a Python loop over samples) on
  smaller batches, the ratio streammlp/reference, and float32/float64;
- how close each size is to a limit: GFLOP/s achieved, exp() and ns per sample,
  the share of time the exps alone take, and whether the parameters fit the
  caches (sizes from ``lscpu``), with a one-line reading per size;
- compile time: the first ``learn`` call in a fresh process with an empty
  Numba cache (``NUMBA_CACHE_DIR`` a new temporary directory), then in a
  second fresh process that reuses that cache.

Run from the repository root (about 30 s; ``--quick`` takes a few seconds)::

    python bench/kernels.py
    python bench/kernels.py --quick
    python bench/kernels.py --repeats 9

Timings are printed, never asserted: machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable

import numpy as np
from numba import njit

from streammlp import MLP, reference
from streammlp.kernels import JIT

SIZES = ([3, 4, 1], [16, 32, 1], [64, 128, 10], [256, 512, 10])
DTYPES = ("float64", "float32")
LR = 0.1
SECONDS = 0.3  # target duration of one timing; --quick uses 0.01
# Run in a fresh interpreter: prints the seconds of the first learn call per dtype in argv.
FIRST_CALL = """
import sys, time
import numpy as np
from streammlp import MLP
for dtype in sys.argv[1:]:
    net, X = MLP([3, 4, 1], dtype=dtype), np.zeros((1, 3), dtype)
    start = time.perf_counter()
    net.learn(X, X[:, 0])
    print(time.perf_counter() - start)
"""


def seconds(run: Callable[..., object], args: tuple) -> float:
    """Wall-clock seconds of ``run(*args)``."""
    start = time.perf_counter()
    run(*args)
    return time.perf_counter() - start


def rates(run: Callable[..., object], make: Callable[[int], tuple], target: float,
          repeats: int) -> tuple[int, float, float]:
    """Rows per timing, median and best samples/s of ``run(*make(rows))``, after a warm-up."""
    n, args = 64, make(64)
    run(*args)  # warm-up: compiles, or loads from the Numba cache
    while (t := seconds(run, args)) < target / 10:
        n *= 4
        args = make(n)
    n = max(1, round(n * target / t))
    args = make(n)
    times = [seconds(run, args) for _ in range(repeats)]
    return n, n / statistics.median(times), n / min(times)


def batch(layers: list[int], dtype: str, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` inputs uniform in [-1, 1]; targets 0/1 (one output) or class labels (several)."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1.0, 1.0, (n, layers[0])).astype(dtype)
    y = (X[:, 0] >= 0).astype(dtype) if layers[-1] == 1 else rng.integers(0, layers[-1], n)
    return X, y


def flops(layers: list[int]) -> int:
    """FLOPs per sample: forward and weight update 2·n_in·n_out each per layer, delta above the first."""
    pairs = list(zip(layers[:-1], layers[1:]))
    return sum(4 * a * b for a, b in pairs) + sum(2 * a * b for a, b in pairs[1:])


@njit(**JIT)  # the kernels' flags, so exp compiles the same way
def _logistic(x: np.ndarray, out: np.ndarray) -> None:
    for i in range(x.shape[0]):
        out[i] = 1.0 / (1.0 + np.exp(-x[i]))  # the kernels' expression, same dtype promotion


def ns_per_logistic(dtype: str) -> float:
    """Nanoseconds of one scalar logistic (one exp) in a Numba loop, best of 5."""
    x = np.random.default_rng(0).uniform(-4.0, 4.0, 200_000).astype(dtype)
    out = np.empty_like(x)
    _logistic(x, out)
    return 1e9 * min(seconds(_logistic, (x, out)) for _ in range(5)) / len(x)


def cache_sizes() -> dict[str, int]:
    """Bytes of one instance of each cache level (``L1d``, ``L2``, ``L3``), from ``lscpu``."""
    try:
        out = subprocess.run(["lscpu", "-B", "-C=NAME,ONE-SIZE"], capture_output=True,
                             text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return {}
    return {name: int(size) for name, size in (line.split() for line in out.splitlines()[1:])}


def fits(nbytes: int, caches: dict[str, int]) -> str:
    """Which cache level (per core) ``nbytes`` of parameters fit in, e.g. ``fit in L2 (1024 KiB)``."""
    for level in ("L1d", "L2", "L3"):
        if level in caches and nbytes <= caches[level]:
            missed = f"exceed L2 ({caches['L2'] // 1024} KiB) and " if level == "L3" else ""
            return f"{missed}fit in {level} ({caches[level] // 1024} KiB)"
    return "fit no cache level" if caches else "(cache sizes unknown: no lscpu)"


def first_calls(cache_dir: str, dtypes: tuple[str, ...]) -> list[float]:
    """Seconds of the first ``learn`` call per dtype, in a fresh process using ``cache_dir``."""
    env = {**os.environ, "NUMBA_CACHE_DIR": cache_dir}
    out = subprocess.run([sys.executable, "-c", FIRST_CALL, *dtypes], env=env,
                         stdout=subprocess.PIPE, text=True, check=True).stdout
    return [float(s) for s in out.split()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run, a few seconds")
    parser.add_argument("--repeats", type=int, default=5, help="timings per figure (default 5)")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats {args.repeats}; expected at least 1")
    target, repeats = (0.01, min(args.repeats, 2)) if args.quick else (SECONDS, args.repeats)
    caches = cache_sizes()
    logistic_ns = {dtype: ns_per_logistic(dtype) for dtype in DTYPES}

    print(f"{'size':>11} {'dtype':>7} {'rows':>8} {'median/s':>10} {'best/s':>10} {'ref/s':>8} "
          f"{'x ref':>6} {'32/64':>6} {'GFLOP/s':>8} {'exp/smp':>8} {'ns/smp':>8}")
    readings = []
    for layers in SIZES:
        name = "-".join(map(str, layers))
        median = {}
        for dtype in DTYPES:
            net = MLP(layers, lr=LR, seed=0, dtype=dtype)
            n, median[dtype], best = rates(net.learn, lambda n: batch(layers, dtype, n),
                                           target, repeats)
            Ws, bs = [W.copy() for W in net.weights], [b.copy() for b in net.biases]
            # check_targets makes the one-hot targets; it is ~0.1 % of the reference's time.
            ref = rates(lambda X, y: reference.learn(Ws, bs, X, net.check_targets(y, len(X)), LR),
                        lambda n: batch(layers, dtype, n), target, repeats)[1]
            ratio = f"{median['float32'] / median['float64']:6.2f}" if dtype == "float32" else ""
            exps = sum(layers[1:])
            print(f"{name:>11} {dtype:>7} {n:>8} {median[dtype]:>10,.0f} {best:>10,.0f} "
                  f"{ref:>8,.0f} {median[dtype] / ref:>6.1f} {ratio:>6} "
                  f"{flops(layers) * median[dtype] / 1e9:>8.2f} {exps:>8} "
                  f"{1e9 / median[dtype]:>8.0f}")
        readings.append((name, layers, median))

    print("\nOne scalar logistic (exp) in a Numba loop: "
          + ", ".join(f"{ns:.1f} ns ({dtype})" for dtype, ns in logistic_ns.items()))
    best_gflops = max(flops(layers) * m["float64"] / 1e9 for _, layers, m in readings)
    for name, layers, median in readings:
        ns = 1e9 / median["float64"]
        exp_share = sum(layers[1:]) * logistic_ns["float64"] / ns
        gflops = flops(layers) * median["float64"] / 1e9
        nbytes = 8 * sum(a * b + b for a, b in zip(layers[:-1], layers[1:]))
        bound = ("per-sample overhead and exp" if gflops < best_gflops / 2
                 else "FLOPs and cache bandwidth")
        print(f"{name}: bound by {bound}. float64: {ns:.0f} ns/sample, exps ~{exp_share:.0%} of "
              f"it, {gflops:.1f} GFLOP/s; {nbytes / 1024:.4g} KiB of parameters "
              f"{fits(nbytes, caches)}, read twice and written once per sample: "
              f"{3 * nbytes * median['float64'] / 1e9:.0f} GB/s. float32: {nbytes / 2048:.4g} KiB "
              f"{fits(nbytes // 2, caches)}, {median['float32'] / median['float64']:.2f}x float64.")

    dtypes = DTYPES[:1] if args.quick else DTYPES
    with tempfile.TemporaryDirectory() as cache_dir:
        cold, warm = first_calls(cache_dir, dtypes), first_calls(cache_dir, dtypes)
    for dtype, c, w in zip(dtypes, cold, warm):
        print(f"first learn call, {dtype}: {c:.2f} s with an empty Numba cache, "
              f"{w:.3f} s reusing it (cache=True hit)")


if __name__ == "__main__":
    main()
