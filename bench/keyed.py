"""Many models in one service (``--keyed``): speed against one model, and memory, in one run.

Prints, for 16-32-1 networks (logistic output, SSE, lr 0.1, float64):

- in-process: ``Fleet.learn_checked`` on ``--rows`` rows spread at random over
  ``--models`` models, against ``MLP.learn_checked`` of one model on the same
  rows; rounds alternate, the ratio is the median of each pair's (target >= 0.8),
  and also the ratio of each side's best time (the least disturbed);
- through the service: one sample per message, the same rows sent to a
  ``--keyed`` service with a key per message (``--models`` keys) and to a plain
  service without keys; a producer process sends the pre-encoded messages,
  timed until ``ping`` reports them trained; rounds alternate (target >= 0.5).
  Also the service process's CPU seconds a sample, with and without keys: a
  ratio that the producer's and other jobs' share of the cores moves less;
- memory: bytes per idle model beyond its parameters, for a fleet of 100,000
  models (tracemalloc: everything the fleet allocates, less the models'
  parameter rows; target <= 4 KB).

Run from the repository root (about a minute)::

    python bench/keyed.py
    python bench/keyed.py --quick
    python bench/keyed.py --only in-process --pairs 5

Timings are printed, never asserted: machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import time
import tracemalloc

import numpy as np
import zmq

# Run as a script, this folder would come first on sys.path and hide the ``service`` package.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

from service.process import ServiceProcess  # noqa: E402
from streammlp import MLP, protocol  # noqa: E402
from streammlp.client import Control  # noqa: E402
from streammlp.fleet import Fleet  # noqa: E402

LAYERS = [16, 32, 1]
SPAWN = mp.get_context("spawn")
TIMEOUT = 60.0
PARTS = ("in-process", "service", "memory")


def data(n: int, models: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (n, LAYERS[0]))
    keys = [f"sensor-{k}" for k in rng.integers(0, models, n)]
    return X, (X[:, 0] >= 0).astype(float), keys


def in_process(n: int, models: int, pairs: int) -> None:
    X, y, keys = data(n, models)
    one = MLP(LAYERS, lr=0.1, seed=0)
    fleet = Fleet(MLP(LAYERS, lr=0.1), seed=0)
    X, Y = one.check_inputs(X), one.check_targets(y, n)
    slots = np.array([fleet.slot(k) for k in keys], dtype=np.int64)
    fleet.learn_checked(X[:2], Y[:2], slots[:2])  # load the kernels
    one.learn_checked(X[:2], Y[:2])
    alones, manys = [], []
    for _ in range(pairs):
        start = time.perf_counter()
        one.learn_checked(X, Y)
        alones.append(time.perf_counter() - start)
        start = time.perf_counter()
        fleet.learn_checked(X, Y, slots)
        manys.append(time.perf_counter() - start)
        print(f"  one model {n / alones[-1]:12,.0f} rows/s   {len(fleet):,} models "
              f"{n / manys[-1]:12,.0f} rows/s   ratio {alones[-1] / manys[-1]:.2f}", flush=True)
    ratios = [a / m for a, m in zip(alones, manys)]
    # The best times are each side's least disturbed: their ratio moves less with the host.
    print(f"in-process, {n:,} rows over {len(fleet):,} models / one model: "
          f"median {statistics.median(ratios):.2f} (target >= 0.8); best times' ratio "
          f"{min(alones) / min(manys):.2f}")


def produce(endpoint: str, n: int, models: int, keyed: bool, go, done) -> None:
    """Producer process: one frame per row, keyed or not; sends them all per go token."""
    context = zmq.Context()
    push = context.socket(zmq.PUSH)
    push.connect(endpoint)
    X, y, keys = data(n, models)
    frames = [protocol.encode_samples(X[i:i + 1], y[i:i + 1], model=keys[i] if keyed else None)
              for i in range(n)]
    done.put("ready")
    while go.get(timeout=TIMEOUT):
        for frame in frames:
            push.send(frame)
    push.close(linger=0)
    context.term()


def service(n: int, models: int, pairs: int) -> None:
    options = ["--layers", ",".join(map(str, LAYERS)), "--lr", "0.1", "--seed", "0"]
    with ServiceProcess(*options) as plain, ServiceProcess(*options, "--keyed") as keyed:
        sides = []
        for s, is_keyed in ((plain, False), (keyed, True)):
            go, done = SPAWN.Queue(), SPAWN.Queue()
            proc = SPAWN.Process(target=produce, args=(s.ingest, n, models, is_keyed, go, done),
                                 daemon=True)
            proc.start()
            done.get(timeout=TIMEOUT)
            sides.append((s, Control(s.control, timeout=TIMEOUT), go, proc))

        def round_(s, control, go) -> tuple[float, float]:
            """Seconds until the service has trained ``n`` more samples, and its CPU seconds."""
            target = control.ping() + n
            cpu, start = cpu_seconds(s.proc.pid), time.perf_counter()
            go.put(True)
            while control.ping() < target:
                if time.perf_counter() - start > TIMEOUT:
                    raise TimeoutError(f"the service did not train {n:,} samples in {TIMEOUT} s")
                time.sleep(0.001)
            return time.perf_counter() - start, cpu_seconds(s.proc.pid) - cpu

        ratios, cpu_ratios = [], []
        try:
            for _ in range(pairs):
                without, cpu_without = round_(*sides[0][:3])
                with_keys, cpu_with = round_(*sides[1][:3])
                ratios.append(without / with_keys)
                cpu_ratios.append(cpu_without / cpu_with)
                print(f"  without keys {n / without:10,.0f} samples/s   with {models:,} keys "
                      f"{n / with_keys:10,.0f} samples/s   ratio {without / with_keys:.2f}   "
                      f"service CPU {cpu_without / n * 1e6:.1f} / {cpu_with / n * 1e6:.1f} "
                      f"us a sample, ratio {cpu_without / cpu_with:.2f}", flush=True)
        finally:
            for _, control, go, proc in sides:
                go.put(None)
                proc.join(10)
                control.close()
        print(f"service, one sample per message over {models:,} keys / without keys: median "
              f"{statistics.median(ratios):.2f} (target >= 0.5); the service's CPU a sample, "
              f"without / with keys: median {statistics.median(cpu_ratios):.2f}; models "
              f"{Control(keyed.control).stats()['models']:,}")


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds that process ``pid`` has used (Linux's /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()  # after the command's name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory(models: int) -> None:
    keys = [f"sensor-{k}" for k in range(models)]  # the keys are the user's: not counted
    Fleet(MLP(LAYERS, lr=0.1), seed=0).slot("warm-up")  # code loaded once (not per model)
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    fleet = Fleet(MLP(LAYERS, lr=0.1), seed=0)
    for key in keys:
        fleet.slot(key)
    grown = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(before, "filename"))
    tracemalloc.stop()
    params = models * fleet.params.shape[1] * fleet.params.itemsize
    print(f"memory, {models:,} idle {'-'.join(map(str, LAYERS))} models: "
          f"{grown / models:,.0f} bytes each in all, {params / models:,.0f} of them parameters, "
          f"{(grown - params) / models:,.0f} beyond (target <= 4,096; buffers grow by doubling, "
          f"so up to half of the capacity is spare)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--models", type=int, default=10_000)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a tenth of everything")
    parser.add_argument("--only", choices=PARTS, action="append",
                        help="run this part only (repeat for several; default: all)")
    args = parser.parse_args()
    scale = 10 if args.quick else 1
    parts = args.only or PARTS
    if "in-process" in parts:
        in_process(args.rows // scale, args.models, args.pairs)
    if "service" in parts:
        service(args.messages // scale, args.models, args.pairs)
    if "memory" in parts:
        memory(100_000 // scale)


if __name__ == "__main__":
    main()
