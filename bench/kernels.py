"""Speed of the Numba ``learn`` kernel, against a plain Numba loop and the NumPy reference.

For the nets 3-4-1, 16-32-1, 64-128-10 and 256-512-10 (logistic hidden and
output units, SSE loss, biases, lr 0.1; integer class labels for 10 outputs),
in float64 and float32, it prints:

- samples/s of ``MLP.learn`` on whole batches: median and best of ``--repeats``
  timings, each sized to take about 0.3 s, after a warm-up call; only the
  ``learn`` call is timed (inputs already in the net's dtype);
- ``x plain``: ``MLP.learn`` against :func:`plain`, the straightforward Numba
  loop of the same rule for one hidden layer (same data, same process), timed
  alternately, one of each per round: the median of the rounds' ratios
  (above 1: ``MLP.learn`` is faster). Then the same for one row per call:
  ``MLP.learn(X[i:i+1], y[i:i+1])`` against ``plain`` on that row
  (``1row x``: how many times longer ``MLP.learn`` takes);
- samples/s of ``streammlp.reference.learn`` (a Python loop over samples) on
  smaller batches, the ratio streammlp/reference, and float32/float64;
- how far each size is from its bound: for the small nets, the exps (their
  throughput) and the chain of dependent operations from one sample to the
  next (two logistic latencies, timed here); for the large ones, the bytes of
  weights read and written per sample at the bandwidth a read-modify-write
  loop over as many bytes reaches here (the caches sizes from ``lscpu``), and
  the FLOPs at the rate that loop reaches in L1;
- the race on every core: ``Race`` of K = 6 members 64-128-10 (learning rates
  0.01 to 3) on whole batches, with ``threads=2`` against ``threads=1``,
  alternating, the median of the rounds' ratios, and whether the two races end
  with the same bits; beside it, what two threads give on this machine for the
  same work: the six nets' ``MLP.learn`` three to a thread against all in one;
- where two threads start to pay (``--part handoff``): the default grid's race
  (``Race.grid(d, 1)``: 3 and 6 inputs in regression, 9 in classification) on
  short batches, every batch shared out (``race.PARALLEL_WORK`` set to 0), 2
  threads against 1 on fresh copies, which goes first alternating; each batch's
  work (rows x ``Race.work_per_row``, what ``PARALLEL_WORK`` counts) beside the
  ratio;
- compile time: the first ``learn`` call in a fresh process with an empty
  Numba cache (``NUMBA_CACHE_DIR`` a new temporary directory), then in a
  second fresh process that reuses that cache.

Run from the repository root (about a minute; ``--quick`` takes a few seconds)::

    python bench/kernels.py
    python bench/kernels.py --quick
    python bench/kernels.py --repeats 9
    python bench/kernels.py --part race   # only the race in threads (or --part sizes)
    python bench/kernels.py --part handoff   # where a race's batch is worth two threads

Timings are printed, never asserted: machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Callable

import numpy as np
from numba import njit

from streammlp import MLP, Race, reference
from streammlp import race as race_module
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


@njit(**JIT)
def plain(W1: np.ndarray, b1: np.ndarray, W2: np.ndarray, b2: np.ndarray, lr: float,
          X: np.ndarray, Y: np.ndarray) -> float:
    """The baseline: one hidden layer, logistic units, SSE, biases, input-major weights, written
    the straightforward way (the issue's loop); returns ΣFE². Not bit-identical to the kernel
    (it multiplies the hidden delta in another order), the same work."""
    n_in, n_hid = W1.shape
    n_out = W2.shape[1]
    one = W1.dtype.type(1.0)
    h, dh = np.empty(n_hid, W1.dtype), np.empty(n_hid, W1.dtype)
    o, do = np.empty(n_out, W1.dtype), np.empty(n_out, W1.dtype)
    sse = 0.0
    for n in range(X.shape[0]):
        for j in range(n_hid):
            h[j] = b1[j]
        for i in range(n_in):
            for j in range(n_hid):
                h[j] += X[n, i] * W1[i, j]
        for j in range(n_hid):
            h[j] = one / (one + np.exp(-h[j]))
        for k in range(n_out):
            o[k] = b2[k]
        for j in range(n_hid):
            for k in range(n_out):
                o[k] += h[j] * W2[j, k]
        for k in range(n_out):
            o[k] = one / (one + np.exp(-o[k]))
            fe = o[k] - Y[n, k]
            sse += fe * fe
            do[k] = fe * o[k] * (one - o[k])
        for j in range(n_hid):
            acc = one - one
            for k in range(n_out):
                acc += W2[j, k] * do[k]
            dh[j] = acc * h[j] * (one - h[j])
            for k in range(n_out):
                W2[j, k] -= lr * (do[k] * h[j])
        for k in range(n_out):
            b2[k] -= lr * do[k]
        for i in range(n_in):
            for j in range(n_hid):
                W1[i, j] -= lr * (dh[j] * X[n, i])
        for j in range(n_hid):
            b1[j] -= lr * dh[j]
    return sse


def against_plain(layers: list[int], dtype: str, rows: int, rounds: int) -> tuple[float, float]:
    """Median over ``rounds`` of plain's time / MLP.learn's on ``rows`` rows in one call, and of
    MLP.learn's time / plain's on one row per call (over ``min(rows, 2000)`` rows), alternating."""
    net = MLP(layers, lr=LR, seed=0, dtype=dtype)
    X, y = batch(layers, dtype, rows)
    Y = net.check_targets(y, rows)
    W1, b1, W2, b2 = (a.copy() for a in (net.weights[0], net.biases[0], net.weights[1],
                                         net.biases[1]))
    lr = np.dtype(dtype).type(LR)
    one = min(rows, 2000)

    def rows_per_call() -> None:
        for i in range(one):
            net.learn(X[i:i + 1], y[i:i + 1])

    def plain_per_call() -> None:
        for i in range(one):
            plain(W1, b1, W2, b2, lr, X[i:i + 1], Y[i:i + 1])

    net.learn(X[:2], y[:2]), plain(W1, b1, W2, b2, lr, X[:2], Y[:2])  # warm-up
    batches, single = [], []
    for _ in range(rounds):
        mine = seconds(net.learn, (X, y))
        batches.append(seconds(plain, (W1, b1, W2, b2, lr, X, Y)) / mine)
        mine = seconds(rows_per_call, ())
        single.append(mine / seconds(plain_per_call, ()))
    return statistics.median(batches), statistics.median(single)


@njit(**JIT)
def _logistic_chain(x: np.ndarray, steps: int) -> float:
    """``steps`` logistics, each of the previous one's result: their latency, not throughput."""
    one = x.dtype.type(1.0)
    y = x[0]
    for _ in range(steps):
        y = one / (one + np.exp(-(y * x[1] + x[2])))
    return y


def ns_logistic_latency(dtype: str) -> float:
    """Nanoseconds of one logistic on a dependency chain, best of 5."""
    x = np.array([0.3, 1.7, -0.4], dtype=dtype)
    _logistic_chain(x, 10)
    return 1e9 * min(seconds(_logistic_chain, (x, 200_000)) for _ in range(5)) / 200_000


@njit(**JIT)
def _update(w: np.ndarray, v: np.ndarray, lr: float, passes: int) -> None:
    for _ in range(passes):
        for i in range(w.shape[0]):
            w[i] -= lr * v[i]


def bandwidth(nbytes: int, dtype: str) -> float:
    """GB/s of read-modify-write passes (``w -= lr * v``, as the weight update) over ``nbytes``
    of weights, counting each byte of ``w`` read and written and of ``v`` read; best of 5
    timings of passes over at least 64 MB in all."""
    n = max(1, nbytes // np.dtype(dtype).itemsize)
    w, v = np.ones(n, dtype), np.full(n, 1e-9, dtype)
    lr, passes = np.dtype(dtype).type(1e-3), max(1, 2**26 // nbytes)
    _update(w, v, lr, 1)
    best = min(seconds(_update, (w, v, lr, passes)) for _ in range(5))
    return 3 * n * passes * np.dtype(dtype).itemsize / best / 1e9


def race_threads(rows: int, rounds: int) -> tuple[float, float, bool]:
    """Medians over ``rounds`` of a 1-thread race's time / a 2-thread race's, both K = 6
    members 64-128-10 on the same ``rows``, and of the same ceiling for the machine: six such
    nets' ``MLP.learn`` one after another / three in each of two threads; and whether the two
    races end with the same bits. One round times the four, alternating."""
    lrs = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
    races = [Race.grid(64, 10, lrs=lrs, hidden=(128,), linear=(), seed=0, threads=t)
             for t in (1, 2)]
    nets = [copy.deepcopy(m) for m in races[0].members]
    X, y = batch([64, 128, 10], "float64", rows)
    for race in races:
        race.learn(X[:10], y[:10])  # warm-up
    nets[0].learn(X[:10], y[:10])

    def learn(group: list[MLP]) -> None:
        for net in group:
            net.learn(X, y)

    def in_two_threads() -> None:
        other = threading.Thread(target=learn, args=(nets[1::2],))
        other.start()
        learn(nets[0::2])
        other.join()

    race_ratios, plain_ratios = [], []
    for _ in range(rounds):
        serial, parallel = (seconds(race.learn, (X, y)) for race in races)
        race_ratios.append(serial / parallel)
        plain_ratios.append(seconds(learn, (nets,)) / seconds(in_two_threads, ()))
    same = all(np.array_equal(a.params, b.params) for a, b in zip(*(r.members for r in races)))
    return statistics.median(race_ratios), statistics.median(plain_ratios), same


def handoff(rounds: int) -> None:
    """Print, per default-grid race and batch size, the median over ``rounds`` of a 1-thread
    race's time / a 2-thread race's with every batch shared out, and the batch's work."""
    rng = np.random.default_rng(0)
    sharing = race_module.PARALLEL_WORK
    race_module.PARALLEL_WORK = 0
    try:
        for d, regression in ((3, True), (6, True), (9, False)):
            task = dict(output="identity", loss="sse") if regression else {}
            races = [Race.grid(d, 1, seed=0, threads=t, **task) for t in (1, 2)]
            for rows in (50, 100, 200, 400, 800, 1600):
                X = rng.normal(size=(rows, d))
                y = rng.normal(size=rows) if regression else (X[:, 0] > 0).astype(float)
                for race in races:
                    copy.deepcopy(race).learn(X, y)  # warm-up: kernels, and the pool's thread
                ratios = []
                for r in range(rounds):
                    one, two = (copy.deepcopy(race) for race in races)
                    first, second = (one, two) if r % 2 else (two, one)  # alternating
                    times = {id(race): seconds(race.learn, (X, y)) for race in (first, second)}
                    ratios.append(times[id(one)] / times[id(two)])
                print(f"{'regression' if regression else 'classification'}, {d} inputs, "
                      f"{rows:5d} rows: work {rows * races[0].work_per_row:>10,}; 2 threads "
                      f"{statistics.median(ratios):.2f}x as fast as 1 (median of {rounds})",
                      flush=True)
    finally:
        race_module.PARALLEL_WORK = sharing


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
    parser.add_argument("--part", choices=("all", "sizes", "race", "handoff"), default="all",
                        help="the sizes (against the plain loop, the bounds), the race in threads, "
                             "where a race's batch is worth two threads, or all and the compile "
                             "time (default)")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats {args.repeats}; expected at least 1")
    target, repeats = (0.01, min(args.repeats, 2)) if args.quick else (SECONDS, args.repeats)
    if args.part in ("all", "sizes"):
        sizes(target, repeats, 3 if args.quick else max(7, args.repeats))
    if args.part in ("all", "race"):
        rows, race_rounds = (200, 3) if args.quick else (4000, max(15, args.repeats))
        speedup, ceiling, same = race_threads(rows, race_rounds)
        print(f"\nRace of K = 6 members 64-128-10, {rows} rows a call: 2 threads {speedup:.2f}x as "
              f"fast as 1 (median of {race_rounds} rounds); same bits: {'yes' if same else 'NO'}; "
              f"the same nets' MLP.learn, 3 in each of 2 threads against all 6 in one: "
              f"{ceiling:.2f}x")
    if args.part in ("all", "handoff"):
        print()
        handoff(3 if args.quick else max(9, args.repeats))
    if args.part == "all":
        dtypes = DTYPES[:1] if args.quick else DTYPES
        with tempfile.TemporaryDirectory() as cache_dir:
            cold, warm = first_calls(cache_dir, dtypes), first_calls(cache_dir, dtypes)
        for dtype, c, w in zip(dtypes, cold, warm):
            print(f"first learn call, {dtype}: {c:.2f} s with an empty Numba cache, "
                  f"{w:.3f} s reusing it (cache=True hit)")


def sizes(target: float, repeats: int, rounds: int) -> None:
    """Every size and dtype: rates, against the plain loop and the reference, and the bounds."""
    caches = cache_sizes()
    logistic_ns = {dtype: ns_per_logistic(dtype) for dtype in DTYPES}
    print(f"{'size':>11} {'dtype':>7} {'rows':>8} {'median/s':>10} {'best/s':>10} {'x plain':>8} "
          f"{'1row x':>7} {'ref/s':>8} {'x ref':>6} {'32/64':>6} {'GFLOP/s':>8} {'ns/smp':>7}")
    readings = []
    for layers in SIZES:
        name = "-".join(map(str, layers))
        median = {}
        for dtype in DTYPES:
            net = MLP(layers, lr=LR, seed=0, dtype=dtype)
            n, median[dtype], best = rates(net.learn, lambda n: batch(layers, dtype, n),
                                           target, repeats)
            faster, slower = against_plain(layers, dtype, n, rounds)
            Ws, bs = [W.copy() for W in net.weights], [b.copy() for b in net.biases]
            # check_targets makes the one-hot targets; it is ~0.1 % of the reference's time.
            ref = rates(lambda X, y: reference.learn(Ws, bs, X, net.check_targets(y, len(X)), LR),
                        lambda n: batch(layers, dtype, n), target, repeats)[1]
            ratio = f"{median['float32'] / median['float64']:6.2f}" if dtype == "float32" else ""
            print(f"{name:>11} {dtype:>7} {n:>8} {median[dtype]:>10,.0f} {best:>10,.0f} "
                  f"{faster:>8.2f} {slower:>7.2f} {ref:>8,.0f} {median[dtype] / ref:>6.1f} "
                  f"{ratio:>6} {flops(layers) * median[dtype] / 1e9:>8.2f} "
                  f"{1e9 / median[dtype]:>7.0f}", flush=True)
        readings.append((name, layers, median))

    latency = {dtype: ns_logistic_latency(dtype) for dtype in DTYPES}
    print("\nOne logistic (exp) in a Numba loop: "
          + ", ".join(f"{logistic_ns[d]:.1f} ns independent, {latency[d]:.1f} ns on a dependency "
                      f"chain ({d})" for d in DTYPES))
    l1 = {dtype: bandwidth(16 * 1024, dtype) for dtype in DTYPES}  # GB/s with every byte in L1
    print("Distance to the bound (samples/s reached / the ceiling; 1.00 = at it):")
    for name, layers, median in readings:
        for dtype in DTYPES:
            ns = 1e9 / median[dtype]
            size = np.dtype(dtype).itemsize
            n_in, n_hid, n_out = layers
            # Per sample: W1 read and written once (the fused pass), W2 read twice and written once.
            nbytes = size * (2 * (n_in * n_hid + n_hid) + 3 * (n_hid * n_out + n_out))
            params = size * (n_in * n_hid + n_hid + n_hid * n_out + n_out)
            exps = sum(layers[1:]) * logistic_ns[dtype]
            chain = 2 * latency[dtype]  # the hidden and the output logistic of every sample
            memory = nbytes / bandwidth(params, dtype)
            # The update loop over 16 KiB (in L1) does 2 FLOPs per 3 elements moved.
            arithmetic = flops(layers) / (2 * l1[dtype] / (3 * size))
            floor, why = max((exps, "exp throughput"), (chain, "dependency chain (2 logistic "
                             "latencies)"), (memory, f"bandwidth over {params / 1024:.4g} KiB, "
                             f"{fits(params, caches)}"), (arithmetic, "vector arithmetic"))
            print(f"  {name} {dtype}: {ns:.0f} ns/sample; floors: exps {exps:.0f} ns, chain "
                  f"{chain:.0f} ns, FLOPs {arithmetic:.0f} ns, {nbytes / 1024:.4g} KiB of "
                  f"weights moved {memory:.0f} ns; bound by {why}: {floor / ns:.2f} of it")



if __name__ == "__main__":
    main()
