"""Acknowledged ingest with exactly-once effect, crash recovery, and the divergence guard."""

import time

import numpy as np
import pytest
import zmq

from streammlp import MLP, protocol
from streammlp.client import Control, Producer, ReliableProducer, Subscriber
from conftest import running_service

RECV_TIMEOUT = 10.0
ACKED = ("--layers", "3,4,1", "--lr", "1", "--seed", "2", "--ingest-acked", "tcp://127.0.0.1:*",
         "--durable-every-ms", "20", "--durable-every-messages", "200")


def stream(messages: int, rows: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, (messages * rows, 3))
    return X, (X[:, 0] >= 0).astype(float)


def assert_weights_identical(control, X, y):
    net = MLP([3, 4, 1], lr=1.0, seed=2)
    net.learn(X, y)
    snap = control.snapshot()
    assert snap.version == len(X)
    for mine, theirs in zip(net.weights + net.biases, snap.weights + snap.biases):
        assert np.array_equal(theirs, mine)  # exact: every sample trained once, in order


def test_kill_9_at_random_points_gives_the_weights_of_an_uninterrupted_run(tmp_path):
    rng = np.random.default_rng(7)
    messages, rows = 3000, 5
    X, y = stream(messages, rows)
    kills = sorted(rng.choice(np.arange(100, messages - 100), size=5, replace=False))
    ckpt = str(tmp_path / "model.npz")
    producer, sent = None, 0
    try:
        for stop_at in [*kills, messages]:
            resume = ("--resume",) if sent else ()
            with running_service(*ACKED, "--checkpoint", ckpt, *resume) as s:
                if producer is None:
                    producer = ReliableProducer(s.acked, "sensor-1", timeout=RECV_TIMEOUT)
                else:
                    producer.connect(s.acked)  # the restarted service is on a new port
                while sent < stop_at:
                    producer.send(X[sent * rows:(sent + 1) * rows], y[sent * rows:(sent + 1) * rows])
                    sent += 1
                if stop_at < messages:
                    time.sleep(rng.uniform(0, 0.03))  # some in flight, some trained, some durable
                    s.proc.kill()  # kill -9: no final checkpoint, nothing flushed
                    s.proc.wait()
                    continue
                producer.flush()
                with Control(s.control, timeout=RECV_TIMEOUT) as c:
                    assert_weights_identical(c, X, y)
                    assert c.stats()["samples"] == messages * rows
    finally:
        if producer is not None:
            producer.close(linger=0)


def recv_status(dealer) -> dict:
    assert dealer.poll(int(RECV_TIMEOUT * 1000)), "no answer from the service"
    return protocol.unpack(dealer.recv())


def test_duplicates_are_acknowledged_not_retrained_and_gaps_are_refused(tmp_path):
    X, y = stream(40, 10, seed=1)
    frames = [protocol.encode_samples(X[i * 10:(i + 1) * 10], y[i * 10:(i + 1) * 10],
                                      producer="p", seq=i + 1) for i in range(40)]
    with running_service(*ACKED, "--checkpoint", str(tmp_path / "m.npz")) as s, \
            Control(s.control, timeout=RECV_TIMEOUT) as control, \
            Subscriber(s.publish, topics=("events",), timeout=RECV_TIMEOUT) as events:
        dealer = zmq.Context.instance().socket(zmq.DEALER)
        try:
            dealer.connect(s.acked)
            for frame in frames + frames:  # everything twice: a producer that resent it all
                dealer.send(frame)
            deadline = time.monotonic() + RECV_TIMEOUT
            while recv_status(dealer).get("durable") != 40:
                assert time.monotonic() < deadline
            assert control.ping() == 400
            dealer.send(protocol.encode_samples(X[:1], y[:1], producer="p", seq=45))
            status = recv_status(dealer)
            while not status.get("resend"):
                status = recv_status(dealer)
            assert (status["next"], status["durable"]) == (41, 40)
            gap = events.recv()[1]
            while gap["kind"] != "gap":
                gap = events.recv()[1]
            assert (gap["producer"], gap["seq"], gap["expected"]) == ("p", 45, 41)
            assert control.ping() == 400
        finally:
            dealer.close(linger=0)
        # A new producer of the same stream continues after its last seq.
        with ReliableProducer(s.acked, "p", timeout=RECV_TIMEOUT) as producer:
            assert producer.seq == 40
            producer.send(X[:3], y[:3])
            producer.flush()
        assert control.ping() == 403


def test_bad_messages_on_the_acked_ingest_are_answered_and_never_block_the_stream(tmp_path):
    X, y = stream(3, 4, seed=2)
    with running_service(*ACKED, "--checkpoint", str(tmp_path / "m.npz")) as s, \
            ReliableProducer(s.acked, "q", timeout=RECV_TIMEOUT) as producer, \
            Control(s.control, timeout=RECV_TIMEOUT) as control:
        producer.send(X[:4], y[:4])
        producer.send(np.full((2, 3), np.nan), np.zeros(2))  # refused, and forgotten
        producer.send(X[4:], y[4:])
        producer.flush()
        assert [(r["rejected"], r["reason"]) for r in producer.rejected] == [(2, "non_finite")]
        assert control.ping() == 12
        assert control.stats()["rejected"] == {"non_finite": 1}


def test_producer_gives_up_with_a_clear_error_when_the_service_stays_away(tmp_path):
    with pytest.raises(TimeoutError, match="is the service running"):
        ReliableProducer("tcp://127.0.0.1:1", "lonely", timeout=0.5)


def test_a_message_that_makes_weights_non_finite_is_undone_and_the_rest_train(rng):
    args = ("--layers", "2,3,1", "--activation", "identity", "--output", "identity", "--lr", "0.05",
            "--seed", "3")
    X = rng.uniform(-1, 1, (30, 2))
    y = X[:, 0] - X[:, 1]
    huge = np.full((1, 2), 1e300)  # finite input whose gradient overflows to inf
    with running_service(*args) as s, Control(s.control, timeout=RECV_TIMEOUT) as control, \
            Subscriber(s.publish, topics=("events",), timeout=RECV_TIMEOUT) as events:
        time.sleep(0.3)
        with Producer(s.ingest) as p:
            p.send(X[:10], y[:10])
            p.send(huge, [0.0])
            p.send(X[10:], y[10:])
        deadline = time.monotonic() + RECV_TIMEOUT
        while control.ping() < 30:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        event = events.recv()[1]
        snap = control.snapshot()
        assert control.stats()["rejected"] == {"diverged": 1}
    assert event["kind"] == "rejected" and event["reason"] == "diverged"
    net = MLP([2, 3, 1], activation="identity", output="identity", lr=0.05, seed=3)
    net.learn(X, y)
    for mine, theirs in zip(net.weights + net.biases, snap.weights + snap.biases):
        assert np.array_equal(theirs, mine)


def test_a_subscriber_that_never_reads_does_not_slow_training(rng):
    X = rng.uniform(-1, 1, (20000, 3))
    y = (X[:, 0] >= 0).astype(float)
    with running_service("--layers", "3,4,1", "--publish-every-samples", "1") as s:
        lazy = zmq.Context.instance().socket(zmq.SUB)
        try:
            lazy.setsockopt(zmq.RCVHWM, 1)
            lazy.setsockopt(zmq.SUBSCRIBE, b"")
            lazy.connect(s.publish)
            with Producer(s.ingest) as p:
                for i in range(0, 20000, 10):
                    p.send(X[i:i + 10], y[i:i + 10])
            with Control(s.control, timeout=RECV_TIMEOUT) as c:
                deadline = time.monotonic() + 30
                while c.ping() < 20000:
                    assert time.monotonic() < deadline, "training stalled behind a slow subscriber"
                    time.sleep(0.01)
        finally:
            lazy.close(linger=0)
