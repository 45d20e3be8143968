"""Speed of the trainer service, against in-process ``MLP.learn`` and raw pyzmq, in one run.

For the nets 3-4-1, 16-32-1 (logistic output, SSE) and 256-512-10 (softmax,
cross-entropy, integer labels), all float64 with lr 0.1 and seed 0, it prints:

- end-to-end samples/s through the service (``python -m service``, default
  publishing; one service per net, reused across its cases): a producer in a
  separate process (``spawn``) sends N samples in binary messages of 1, 256,
  1024 (16-32-1 only) or 4096 rows, encoded beforehand (encoding is not timed);
  timed from the first send until ``Control.ping()``, polled every ``POLL_S``
  once the last message is sent, reports all N trained;
- samples/s of ``MLP.learn`` in this process on the same rows, one call per
  message, starting from the service's weights (so both do the same work, and
  end with the same weights, which is checked), and the ratio
  service/in-process: service and in-process rounds alternate, and the ratio
  is the median of each pair's ratio;
- raw pyzmq PUSH/PULL messages/s between two processes, the same way, with the
  3-4-1 single-sample frames and no service: the ceiling for one sample per message;
- latency from a sample's send to a ``Subscriber`` holding weights that include
  it, p50 and p99, at 3-4-1 with ``--publish-every-samples 1``: single-sample
  messages sent one per ``PACE_S`` by a thread of this process.

Figures are medians of ``--repeats`` rounds, next to the issue's targets. Run
from the repository root (about two minutes; ``--quick`` takes about 15 s)::

    python bench/service.py
    python bench/service.py --quick
    python bench/service.py --repeats 9

Timings are printed, never asserted: machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import itertools
import multiprocessing as mp
import os
import queue
import statistics
import sys
import threading
import time
from typing import Callable, Iterator

import numpy as np
import zmq

# Run as a script, this file's folder comes first on sys.path, and its name would hide
# the ``service`` package: take the folder off.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

from service.process import ServiceProcess  # noqa: E402
from streammlp import MLP, protocol  # noqa: E402
from streammlp.client import Control, Producer, Subscriber  # noqa: E402

SPAWN = mp.get_context("spawn")
LR = 0.1
# (layers, options of MLP and of the service, {rows per message: samples per round}):
# rounds of about 0.5-2 s on a 2-core machine.
CASES = [
    ([3, 4, 1], {}, {1: 200_000, 256: 2_000_000, 4096: 4_000_000}),
    ([16, 32, 1], {}, {1: 200_000, 256: 800_000, 1024: 800_000, 4096: 800_000}),
    ([256, 512, 10], {"output": "softmax", "loss": "cross_entropy"},
     {1: 8_000, 256: 16_000, 4096: 16_000}),
]
QUICK = 20  # --quick divides every round's samples by this
RAW_MESSAGES = 400_000
SINGLE_TARGET = 150_000  # the issue's samples/s with one sample per message (3-4-1, 16-32-1)
RATIO_TARGET = 0.8  # the issue's service/in-process at 16-32-1, 1024 rows per message
ISSUE_RAW = 220_000  # the issue's raw pyzmq PUSH/PULL single-sample messages/s
LATENCY_MESSAGES, PACE_S = 2000, 0.001
POLL_S = 0.001  # ping interval while the last samples are being trained
START_TIMEOUT, STOP_TIMEOUT, TIMEOUT = 60.0, 15.0, 30.0  # seconds


def data(layers: list[int], n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` rows uniform in [-1, 1]; targets 0/1 (one output) or class labels (several)."""
    rng = np.random.default_rng(0)
    X = rng.uniform(-1.0, 1.0, (n, layers[0]))
    y = (X[:, 0] >= 0).astype(float) if layers[-1] == 1 else rng.integers(0, layers[-1], n)
    return X, y


def produce(endpoint: str, layers: list[int], n: int, rows: int, go: mp.Queue,
            done: mp.Queue) -> None:
    """Producer process: encode ``n`` samples in messages of ``rows``; send all per go token."""
    context = zmq.Context()
    push = context.socket(zmq.PUSH)
    push.setsockopt(zmq.SNDTIMEO, int(TIMEOUT * 1000))
    push.connect(endpoint)
    X, y = data(layers, n)
    frames = [protocol.encode_samples(X[i:i + rows], y[i:i + rows]) for i in range(0, n, rows)]
    done.put("ready")
    try:
        while go.get(timeout=TIMEOUT):  # None: stop
            for frame in frames:
                push.send(frame)
            done.put("sent")
    finally:
        push.close(linger=0)
        context.term()


def stop(proc: mp.Process) -> None:
    """Terminate, then kill if it is still running after ``STOP_TIMEOUT``."""
    proc.terminate()
    proc.join(STOP_TIMEOUT)
    if proc.is_alive():
        proc.kill()
        proc.join()


def reported(done: mp.Queue, what: str, timeout: float = TIMEOUT) -> None:
    """Wait for the producer process to put ``what`` on ``done``; ``TimeoutError`` if it does not."""
    try:
        done.get(timeout=timeout)
    except queue.Empty:
        raise TimeoutError(f"the producer process did not report {what!r} within {timeout} s; "
                           "is the service (or the PULL socket) still taking messages?") from None


@contextlib.contextmanager
def producer(endpoint: str, layers: list[int], n: int, rows: int) -> Iterator[Callable]:
    """A producer process holding ``n`` samples encoded in messages of ``rows``. Yields
    ``send(wait)``: the seconds one round takes to get all of them past ``wait(done)``."""
    go, done = SPAWN.Queue(), SPAWN.Queue()
    proc = SPAWN.Process(target=produce, args=(endpoint, layers, n, rows, go, done), daemon=True)
    proc.start()

    def send(wait: Callable[[mp.Queue], None]) -> float:
        start = time.perf_counter()
        go.put(True)
        wait(done)
        return time.perf_counter() - start
    try:
        reported(done, "ready", START_TIMEOUT)  # connected, and every message encoded
        yield send
        go.put(None)
        proc.join(STOP_TIMEOUT)
    finally:
        if proc.is_alive():
            stop(proc)


def wait_version(control: Control, target: int) -> None:
    """Poll ``ping()`` every ``POLL_S`` until the service has trained ``target`` samples."""
    deadline = time.monotonic() + TIMEOUT
    while (version := control.ping()) < target:
        if time.monotonic() > deadline:
            raise TimeoutError(f"service stuck at version {version}, expected {target}")
        time.sleep(POLL_S)


def trained(control: Control, n: int) -> Callable[[mp.Queue], None]:
    """A ``wait`` for :func:`rounds`: the producer has sent, and the service trained ``n`` more."""
    targets = itertools.count(control.ping() + n, n)

    def wait(done: mp.Queue) -> None:
        target = next(targets)
        reported(done, "sent")
        wait_version(control, target)
    return wait


def in_process(layers: list[int], spec: dict, n: int, rows: int,
               start: protocol.Weights) -> tuple[Callable[[], float], MLP]:
    """A round of ``MLP.learn`` over the producer's rows in this process, one call per message
    (call it for its seconds), and its network, which starts from the service's weights.

    Both sides then train the same weights on the same rows in the same order: the same
    work. (Weights that have trained longer are slower to train, as saturated units cost
    more: a fresh network here against the service's would flatter in-process by ~20 %.)
    """
    net = MLP(layers, lr=LR, seed=0, **spec)
    for mine, theirs in zip(net.weights + net.biases, start.weights + start.biases):
        mine[...] = theirs
    X, y = data(layers, n)
    batches = [(X[i:i + rows], y[i:i + rows]) for i in range(0, n, rows)]
    copy.deepcopy(net).learn(*batches[0])  # warm-up: loads the kernel from the Numba cache

    def one_round() -> float:
        begin = time.perf_counter()
        for Xb, yb in batches:
            net.learn(Xb, yb)
        return time.perf_counter() - begin
    return one_round, net


def same_weights(net: MLP, snapshot: protocol.Weights) -> None:
    """Raise unless the service holds ``net``'s weights: the two sides did not do the same work."""
    for mine, theirs in zip(net.weights + net.biases, snapshot.weights + snapshot.biases):
        if not np.allclose(mine, theirs, rtol=0, atol=1e-9):
            raise RuntimeError("the service's weights differ from the in-process network's "
                               "after the same rows: the comparison is not like for like")


def raw_pushpull(n: int, repeats: int) -> float:
    """Median seconds to move ``n`` 3-4-1 single-sample frames PUSH -> PULL, no service."""
    context = zmq.Context()
    pull = context.socket(zmq.PULL)
    pull.setsockopt(zmq.RCVTIMEO, int(TIMEOUT * 1000))
    pull.bind("tcp://127.0.0.1:*")

    def received(done: mp.Queue) -> None:
        for _ in range(n):
            pull.recv()
        reported(done, "sent")
    try:
        with producer(pull.getsockopt_string(zmq.LAST_ENDPOINT), [3, 4, 1], n, 1) as send:
            return statistics.median(send(received) for _ in range(repeats))
    finally:
        pull.close(linger=0)
        context.term()


def send_paced(producer: Producer, X: np.ndarray, y: np.ndarray, sent_at: np.ndarray,
               halt: threading.Event) -> None:
    """Send the rows one per message, one every ``PACE_S``, noting each send time."""
    next_at = time.perf_counter()
    for i in range(len(X)):
        if halt.wait(max(0.0, next_at - time.perf_counter())):
            return
        sent_at[i] = time.perf_counter()
        producer.send(X[i:i + 1], y[i:i + 1])
        next_at += PACE_S


def latency(n: int) -> np.ndarray:
    """Seconds from each single-sample message's send to the first weights that include it."""
    options = ("--layers", "3,4,1", "--lr", str(LR), "--seed", "0", "--publish-every-samples", "1")
    X, y = data([3, 4, 1], n)
    sent_at, waited, halt = np.zeros(n), np.zeros(n), threading.Event()
    with (ServiceProcess(*options) as service, Control(service.control) as control,
          Subscriber(service.publish, topics=("weights",), timeout=TIMEOUT) as sub):
        producer = Producer(service.ingest, timeout=TIMEOUT)
        sender = threading.Thread(target=send_paced, args=(producer, X, y, sent_at, halt))
        try:
            # A new subscription takes a moment to reach the publisher: send until weights arrive.
            for primed in range(1, 101):
                producer.send(X[:1], y[:1])
                with contextlib.suppress(TimeoutError):
                    sub.recv(timeout=0.1)
                    break
            else:
                raise RuntimeError("no weights published after 100 samples")
            wait_version(control, primed)
            sender.start()
            seen = 0  # messages included in the newest weights received
            while seen < n:
                covered = sub.recv()[1].version - primed
                waited[seen:covered] = time.perf_counter() - sent_at[seen:covered]
                seen = max(seen, covered)
            return waited
        finally:
            halt.set()
            if sender.is_alive():
                sender.join(TIMEOUT)
            producer.close(linger=0)


def target(name: str, rows: int, service: float, ratio: float) -> str:
    """The issue's target for this case, if it states one, and whether it is met."""
    if rows == 1 and name in ("3-4-1", "16-32-1"):
        return f">= {SINGLE_TARGET:,}/s: {'met' if service >= SINGLE_TARGET else 'not met'}"
    if (name, rows) == ("16-32-1", 1024):
        return f">= {RATIO_TARGET}x in-process: {'met' if ratio >= RATIO_TARGET else 'not met'}"
    return ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run, about 15 s")
    parser.add_argument("--repeats", type=int, default=5, help="rounds per figure (default 5)")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats {args.repeats}; expected at least 1")
    scale, repeats = (QUICK, min(args.repeats, 2)) if args.quick else (1, args.repeats)
    print(f"{os.cpu_count()} CPUs, pyzmq {zmq.__version__}, libzmq {zmq.zmq_version()}; "
          f"medians of {repeats} rounds\n")
    print(f"{'net':>11} {'rows/msg':>8} {'samples':>9} {'service/s':>11} {'in-proc/s':>11} "
          f"{'ratio':>6}  issue's target")
    single = {}
    for layers, spec, plan in CASES:
        name = "-".join(map(str, layers))
        options = ["--layers", ",".join(map(str, layers)), "--lr", str(LR), "--seed", "0",
                   *(s for key, value in spec.items() for s in (f"--{key}", value))]
        with ServiceProcess(*options) as process, Control(process.control) as control:
            for rows, n in plan.items():
                n //= scale
                with producer(process.ingest, layers, n, rows) as send:
                    wait = trained(control, n)
                    local_round, net = in_process(layers, spec, n, rows, control.snapshot())
                    # Rounds alternate, so a change of the machine's load hits both sides alike.
                    times = [(send(wait), local_round()) for _ in range(repeats)]
                same_weights(net, control.snapshot())
                service = n / statistics.median(remote for remote, _ in times)
                local = n / statistics.median(here for _, here in times)
                ratio = statistics.median(here / remote for remote, here in times)
                if rows == 1:
                    single[name] = service
                print(f"{name:>11} {rows:>8} {n:>9,} {service:>11,.0f} {local:>11,.0f} "
                      f"{ratio:>6.2f}  {target(name, rows, service, ratio)}")

    n = RAW_MESSAGES // scale
    raw = n / raw_pushpull(n, repeats)
    frame = protocol.encode_samples(*data([3, 4, 1], 1))
    print(f"\nraw pyzmq PUSH/PULL, {len(frame)}-byte frames (one 3-4-1 sample), two processes: "
          f"{raw:,.0f} msgs/s (issue: ~{ISSUE_RAW:,}); service at 1 row/msg / raw: "
          + ", ".join(f"{rate / raw:.3f} ({name})" for name, rate in single.items()))
    n = LATENCY_MESSAGES // (5 if args.quick else 1)
    p50, p99, worst = np.percentile(latency(n) * 1e6, [50, 99, 100])
    print(f"latency from send to a subscriber holding weights that include the sample (3-4-1, "
          f"--publish-every-samples 1, {n} single-sample messages, one per {PACE_S * 1e3:g} ms): "
          f"p50 {p50:.0f} us, p99 {p99:.0f} us, max {worst:.0f} us")


if __name__ == "__main__":
    main()
