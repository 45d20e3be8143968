"""Reliability figures of the service, in one run: nothing lost, exactly once, and what it costs.

1. Four producer processes push 1M samples (250k each, 100 rows per message, one
   message in 50 malformed) into a trainer slowed with ``--delay-ms``: samples
   sent vs trained vs rejected. PUSH blocks at the high-water mark, so nothing
   may be lost silently: sent = trained + rejected.
2. Acknowledged ingest (``ReliableProducer`` -> ``--ingest-acked``, durable in
   grouped checkpoints) against plain PUSH ingest: samples/s of the same stream.
3. kill -9 of the service at random points of an acknowledged stream, restart
   with ``--resume``, the producer resends: how many kill points, and whether
   the final weights are bit-identical to an uninterrupted run.

Run from the repository root (about a minute; ``--quick`` about 20 s)::

    python bench/reliability.py
    python bench/reliability.py --quick

Timings are printed, never asserted.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import time

import numpy as np

# Run as a script, this file's folder comes first on sys.path, and bench/service.py would
# hide the ``service`` package: take the folder off.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

from service.process import ServiceProcess  # noqa: E402
from streammlp import MLP  # noqa: E402
from streammlp.client import Control, Producer, ReliableProducer  # noqa: E402

NET = ("--layers", "3,4,1", "--lr", "1", "--seed", "0")
TIMEOUT = 120.0
DELAY_MS = 50  # the trainer sleeps this long after each drain: slower than the producers


def data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    X = np.random.default_rng(seed).uniform(-1, 1, (n, 3))
    return X, (X[:, 0] >= 0).astype(float)


def wait_for(control: Control, done, what: str) -> dict:
    deadline = time.monotonic() + TIMEOUT
    while not done(stats := control.stats()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: {stats['samples']} samples, rejected {stats['rejected']}")
        time.sleep(0.05)
    return stats


def push(endpoint: str, seed: int, n: int, rows: int, sent: mp.Queue) -> None:
    """One producer process: ``n`` samples in messages of ``rows``; every 50th message has a NaN."""
    X, y = data(n, seed)
    good = bad = 0
    with Producer(endpoint, timeout=TIMEOUT) as p:
        for k, i in enumerate(range(0, n, rows)):
            Xb = X[i:i + rows].copy()
            if k % 50 == 49:
                Xb[0, 0] = np.nan
                bad += len(Xb)
            else:
                good += len(Xb)
            p.send(Xb, y[i:i + rows])
    sent.put((good, bad))


def concurrent_producers(total: int, producers: int = 4, rows: int = 100) -> None:
    with ServiceProcess(*NET, "--delay-ms", str(DELAY_MS)) as s, Control(s.control, timeout=10) as control:
        queue = mp.get_context("spawn").Queue()
        procs = [mp.get_context("spawn").Process(target=push, args=(s.ingest, k, total // producers,
                                                                    rows, queue))
                 for k in range(producers)]
        start = time.perf_counter()
        for proc in procs:
            proc.start()
        try:
            counts = [queue.get(timeout=TIMEOUT) for _ in procs]
        finally:
            for proc in procs:
                proc.join(10)
                if proc.is_alive():
                    proc.kill()
        good, bad = map(sum, zip(*counts))
        stats = wait_for(control, lambda m: m["samples"] + m["rejected"].get("non_finite", 0) * rows
                         >= good + bad, "concurrent producers")
        seconds = time.perf_counter() - start
    rejected_rows = stats["rejected"].get("non_finite", 0) * rows
    print(f"{producers} producers, {good + bad:,} samples sent ({bad:,} in {bad // rows} malformed "
          f"messages) into a trainer slowed by {DELAY_MS} ms per drain, {seconds:.1f} s:")
    print(f"  trained {stats['samples']:,}, rejected {rejected_rows:,} "
          f"({stats['rejected']}), lost {good + bad - stats['samples'] - rejected_rows:,}")


def acked_cost(n: int, rows: int) -> None:
    X, y = data(n, 1)
    with tempfile.TemporaryDirectory() as d, \
            ServiceProcess(*NET, "--checkpoint", os.path.join(d, "m.npz"),
                           "--ingest-acked", "tcp://127.0.0.1:*") as s, \
            Control(s.control, timeout=10) as control:
        rates = {}
        with Producer(s.ingest) as p:
            start, base = time.perf_counter(), control.ping()
            for i in range(0, n, rows):
                p.send(X[i:i + rows], y[i:i + rows])
            wait_for(control, lambda m: m["samples"] >= base + n, "plain ingest")
            rates["plain PUSH"] = n / (time.perf_counter() - start)
        with ReliableProducer(s.acked, "bench", timeout=TIMEOUT) as p:
            start = time.perf_counter()
            for i in range(0, n, rows):
                p.send(X[i:i + rows], y[i:i + rows])
            p.flush()  # every sample durable: on disk in a checkpoint
            rates["acked, durable"] = n / (time.perf_counter() - start)
    plain = rates["plain PUSH"]
    print(f"{rows} rows per message, {n:,} samples: " + ", ".join(
        f"{name} {rate:,.0f}/s ({rate / plain:.2f}x)" for name, rate in rates.items()))


def kill_points(points: int, messages: int, rows: int = 5) -> None:
    rng = np.random.default_rng(11)
    X, y = data(messages * rows, 2)
    kills = sorted(rng.choice(np.arange(50, messages - 50), size=points, replace=False))
    producer, sent, restarts = None, 0, 0
    with tempfile.TemporaryDirectory() as d:
        args = (*NET, "--checkpoint", os.path.join(d, "m.npz"), "--ingest-acked",
                "tcp://127.0.0.1:*", "--durable-every-ms", "20", "--durable-every-messages", "200")
        try:
            for stop_at in [*kills, messages]:
                with ServiceProcess(*args, *(("--resume",) if sent else ())) as s:
                    if producer is None:
                        producer = ReliableProducer(s.acked, "killed", timeout=30)
                    else:
                        producer.connect(s.acked)
                    while sent < stop_at:
                        producer.send(X[sent * rows:(sent + 1) * rows], y[sent * rows:(sent + 1) * rows])
                        sent += 1
                    if stop_at < messages:
                        time.sleep(rng.uniform(0, 0.03))
                        s.proc.kill()
                        s.proc.wait()
                        restarts += 1
                        continue
                    producer.flush()
                    with Control(s.control, timeout=10) as control:
                        snap, samples = control.snapshot(), control.ping()
        finally:
            if producer is not None:
                producer.close(linger=0)
    net = MLP([3, 4, 1], lr=1.0, seed=0)
    net.learn(X, y)
    identical = all(np.array_equal(a, b) for a, b in zip(net.weights + net.biases,
                                                          snap.weights + snap.biases))
    print(f"kill -9 at {restarts} random points of a {messages * rows:,}-sample acknowledged stream: "
          f"trained {samples:,} (sent {messages * rows:,}); final weights "
          f"{'bit-identical to' if identical else 'DIFFERENT from'} an uninterrupted run")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    scale = 20 if args.quick else 1
    concurrent_producers(1_000_000 // scale)
    for rows in (1, 256):
        acked_cost((40_000 if rows == 1 else 1_000_000) // scale, rows)
    kill_points(3 if args.quick else 20, 3000)


if __name__ == "__main__":
    main()
