"""Training from NATS JetStream: replay against the ZeroMQ ingest, shards, small messages; one run.

A real ``nats-server -js`` (the ``nats`` extra) on a free loopback port with a
temporary store, stopped at the end. Every figure is taken on the service's
side: ``Control.stats()`` polled every ``POLL_S`` from the first poll that sees
samples trained until all are, rate = samples trained in between / time between.

- **replay**: 16-32-1 (lr 0.1, seed 0), ``--messages`` messages of 256 rows
  (1,024,000 samples by default) stored in a stream, trained by
  ``serve --source ... --from first`` (a fresh checkpoint each round), against
  the same frames sent by a PUSH socket of this process (a thread) to the
  ZeroMQ ingest of an identical service. Rounds alternate; the ratio is the
  median of the pairs' ratios (target: >= 0.7).
- **shards**: ``--keys`` keys (10,000), 4 messages of 16 rows each, 16-32-1
  keyed, in a stream made by ``stream create --partitions 2``: one trainer
  reading all of it, against two trainers ``--shard 0/2`` and ``--shard 1/2``
  started together. A side's rate is all samples over the time from the first
  sample either trainer trained to the last (the two start within their
  warm-ups' difference, which counts against the shards). Target: >= 1.6.
- **single-sample messages**: ``--small`` messages of one 16-32-1 row, replayed
  by the service; beside it, what bounds it: the source's reader (``_Pull``)
  fetching the same messages alone, in a process of its own (``spawn``); and the
  same frames on the ZeroMQ ingest.
  ``--parts`` runs some of the three.

Run from the repository root (a few minutes; ``--quick`` is smaller)::

    python bench/scaleout.py
    python bench/scaleout.py --quick

Timings are printed, never asserted: machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import threading
import time

import numpy as np
import zmq

# Run as a script, this file's folder comes first on sys.path and would hide the ``service``
# package; the test helpers' folder holds the nats-server runner.
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != HERE]
sys.path.append(os.path.join(os.path.dirname(HERE), "tests"))

from natsserver import NatsServer  # noqa: E402
from service.process import ServiceProcess  # noqa: E402
from service.sources import jetstream as source  # noqa: E402
from streammlp import protocol  # noqa: E402
from streammlp.client import Control  # noqa: E402
from streammlp.jetstream import Connection, StreamProducer, call, ensure_stream  # noqa: E402

SPAWN = mp.get_context("spawn")
POLL_S = 0.005
TIMEOUT_S = 300.0
NET = ("--layers", "16,32,1", "--lr", "0.1", "--seed", "0", "--checkpoint-every-s", "3600")


def frames(messages: int, rows: int, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, (messages * rows, 16))
    y = (X[:, 0] >= 0).astype(float)
    return [protocol.encode_samples(X[i * rows:(i + 1) * rows], y[i * rows:(i + 1) * rows])
            for i in range(messages)]


def fill(url: str, stream: str, subjects, payloads: list[bytes], partitions: int = 1) -> None:
    """Make ``stream`` (prefix: its name in lower case) and publish ``payloads`` to
    ``subjects`` (one, or one per payload)."""
    prefix = stream.lower()
    call(Connection(url), lambda js: ensure_stream(js, stream, partitions, prefix))
    with StreamProducer(url, f"{prefix}.x") as producer:
        for i, payload in enumerate(payloads):
            producer.send_frame(payload, subjects if isinstance(subjects, str) else subjects[i])
        producer.flush()


def trained(controls: list[Control], total: int) -> float:
    """Samples/s of the services behind ``controls`` together, until they hold ``total``."""
    deadline = time.monotonic() + TIMEOUT_S
    start = None
    while time.monotonic() < deadline:
        now, done = time.perf_counter(), sum(c.stats()["samples"] for c in controls)
        if start is None and done:
            start = (now, done)
        if done >= total:
            return (done - start[1]) / (now - start[0]) if now > start[0] else float("nan")
        time.sleep(POLL_S)
    raise TimeoutError(f"the services trained {done:,} of {total:,} samples in {TIMEOUT_S} s")


def replay_rate(url: str, stream: str, total: int) -> float:
    """Samples/s of a service replaying ``stream`` from its first message."""
    with tempfile.TemporaryDirectory() as tmp, \
            ServiceProcess(*NET, "--source", url, "--stream", stream, "--checkpoint",
                           os.path.join(tmp, "model.npz")) as s, Control(s.control) as c:
        return trained([c], total)


def shards_rate(url: str, stream: str, total: int, shards: int) -> float:
    """Samples/s of ``shards`` keyed trainers of ``stream`` together (1: one reads it all)."""
    runs = [()] if shards == 1 else [("--shard", f"{i}/{shards}") for i in range(shards)]
    with tempfile.TemporaryDirectory() as tmp:
        services = []
        try:
            for i, run in enumerate(runs):
                services.append(ServiceProcess(
                    *NET, "--keyed", "--max-models", str(10 ** 6), "--source", url, "--stream", stream,
                    "--subject-prefix", stream.lower(), "--checkpoint", os.path.join(tmp, f"{i}.npz"),
                    *run))
            controls = [Control(s.control) for s in services]
            rate = trained(controls, total)
            for c in controls:
                c.close()
            return rate
        finally:
            for s in services:
                s.stop()


def zmq_rate(payloads: list[bytes], total: int) -> float:
    with ServiceProcess(*NET) as s, Control(s.control) as c:
        context = zmq.Context.instance()
        push = context.socket(zmq.PUSH)
        push.connect(s.ingest)

        def send():
            for payload in payloads:
                push.send(payload, copy=False)

        sender = threading.Thread(target=send)
        sender.start()
        try:
            return trained([c], total)
        finally:
            sender.join()
            push.close(linger=0)


def fetch_rate(url: str, stream: str, messages: int) -> float:
    """Messages/s of the source's reader fetching ``stream`` alone, in a process of its own."""
    with SPAWN.Pool(1) as pool:
        return pool.apply(_fetch_rate, (url, stream, messages))


def _fetch_rate(url: str, stream: str, messages: int) -> float:
    nats = source.jetstream._nats()
    api = nats.js.api

    async def main() -> float:
        nc = await nats.connect(url)
        js = nc.jetstream()
        await js.add_consumer(stream, api.ConsumerConfig(
            name="bench", deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=1,
            ack_policy=api.AckPolicy.NONE, mem_storage=True))
        pull = source._Pull(nc, stream, "bench")
        await pull.subscribe()
        got, start = 0, time.perf_counter()
        while got < messages:
            for m in await pull.fetch(min(source.FETCH_MESSAGES, messages - got), source.FETCH_WAIT_S):
                m.metadata  # the source reads every message's sequences
                got += 1
        seconds = time.perf_counter() - start
        await pull.unsubscribe()
        await js.delete_consumer(stream, "bench")
        await nc.close()
        return got / seconds
    return asyncio.run(main())


def median_ratio(pairs: list[tuple[float, float]]) -> float:
    return statistics.median(a / b for a, b in pairs)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--messages", type=int, default=4000, help="256-row messages replayed")
    p.add_argument("--keys", type=int, default=10_000)
    p.add_argument("--small", type=int, default=200_000, help="single-sample messages")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="a tenth of the sizes, 2 repeats")
    p.add_argument("--parts", default="replay,shards,small",
                   help="which of replay, shards, small to run (default: all)")
    args = p.parse_args()
    if args.quick:
        args.messages, args.keys, args.small, args.repeats = 400, 1000, 20_000, 2
    with NatsServer() as server:
        url = server.url
        print(f"nats-server {server.exe} at {url}; {os.cpu_count()} cores")

        parts = args.parts.split(",")
        if "replay" in parts:
            replay(url, args)
        if "shards" in parts:
            shards(url, args)
        if "small" in parts:
            small(url, args)


def replay(url: str, args: argparse.Namespace) -> None:
    """Replay against the ZeroMQ ingest, 16-32-1, 256 rows a message."""
    payloads = frames(args.messages, 256)
    total = args.messages * 256
    fill(url, "REPLAY", "replay.x", payloads)
    pairs = []
    for _ in range(args.repeats):
        js, zm = replay_rate(url, "REPLAY", total), zmq_rate(payloads, total)
        pairs.append((js, zm))
        print(f"  replay {js:>12,.0f} samples/s   zeromq ingest {zm:>12,.0f} samples/s")
    print(f"replay of {total:,} samples from JetStream / ZeroMQ ingest: "
          f"{median_ratio(pairs):.2f}x (median of {len(pairs)} pairs; target >= 0.7)")


def shards(url: str, args: argparse.Namespace) -> None:
    """2 trainers against 1, keyed, 4 messages of 16 rows per key."""
    rng = np.random.default_rng(1)
    keys = rng.integers(args.keys, size=args.keys * 4)
    keys[:args.keys] = np.arange(args.keys)  # every key has messages
    payloads = frames(len(keys), 16, seed=1)
    fill(url, "SHARDS", [f"shards.k{k}" for k in keys], payloads, partitions=2)
    total = len(keys) * 16
    pairs = []
    for _ in range(args.repeats):
        two, one = shards_rate(url, "SHARDS", total, 2), shards_rate(url, "SHARDS", total, 1)
        pairs.append((two, one))
        print(f"  2 shards {two:>12,.0f} samples/s   1 trainer {one:>12,.0f} samples/s")
    print(f"{args.keys:,} keys, {total:,} samples: 2 shards / 1 trainer: "
          f"{median_ratio(pairs):.2f}x aggregate (median of {len(pairs)} pairs; target >= 1.6)")


def small(url: str, args: argparse.Namespace) -> None:
    """One sample per message: the service's replay, its reader alone, the ZeroMQ ingest."""
    payloads = frames(args.small, 1, seed=2)
    fill(url, "SMALL", "small.x", payloads)
    rates = []
    for _ in range(args.repeats):
        rates.append((replay_rate(url, "SMALL", args.small), fetch_rate(url, "SMALL", args.small),
                      zmq_rate(payloads, args.small)))
        print("  replay {:>10,.0f} samples/s   reader alone {:>10,.0f} messages/s   zeromq ingest "
              "{:>10,.0f} samples/s".format(*rates[-1]))
    print(f"one sample per message, {args.small:,} messages: replay / the source's reader alone "
          f"(its own process, no training): {median_ratio([r[:2] for r in rates]):.2f}x; "
          f"replay / ZeroMQ ingest: {median_ratio([r[::2] for r in rates]):.3f}x "
          f"(medians of {len(rates)})")

if __name__ == "__main__":
    main()
