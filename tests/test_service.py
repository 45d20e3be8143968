"""The trainer service as a real process on 127.0.0.1: exact training, publishing, control, bad input."""

import subprocess
import sys
import time

import msgpack
import numpy as np
import pytest
import zmq

from streammlp import MLP, protocol
from streammlp import read as read_model
from streammlp.client import Control, Producer, ServiceError, Subscriber
from conftest import running_service

SPEC = dict(layers=[3, 4, 1], lr=1.0, seed=1)
ARGS = ("--layers", "3,4,1", "--lr", "1", "--seed", "1", "--publish-every-ms", "20")
RECV_TIMEOUT = 10.0


@pytest.fixture(scope="module")
def service():
    """One service shared by the tests of this module (it compiles once)."""
    with running_service(*ARGS) as s:
        yield s


@pytest.fixture
def control(service):
    with Control(service.control, timeout=RECV_TIMEOUT) as c:
        yield c


def twin_of(control) -> MLP:
    """A local network holding the service's current weights, to replay samples on."""
    snap = control.snapshot()
    net = MLP(**SPEC)
    for mine, theirs in zip(net.weights + net.biases, snap.weights + snap.biases):
        mine[...] = theirs
    return net


def wait_for_version(control, version: int, timeout: float = RECV_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while control.ping() < version:
        if time.monotonic() > deadline:
            raise TimeoutError(f"service stuck at version {control.ping()}, expected {version}")
        time.sleep(0.01)


def assert_same_weights(control, net: MLP) -> None:
    snap = control.snapshot()
    assert snap.version == control.ping()
    for mine, theirs in zip(net.weights + net.biases, snap.weights + snap.biases):
        np.testing.assert_allclose(theirs, mine, rtol=0, atol=1e-12)


def test_pushed_samples_train_exactly_like_learn(service, control, rng):
    net = twin_of(control)
    start = control.ping()
    X = rng.uniform(-1, 1, (3000, 3))
    y = (X[:, 0] >= 0).astype(float)
    cuts = [0, 1, 2, 50, 51, 800, 1500, 2999, 3000]  # batches of 1 to 700 rows, in order
    with Producer(service.ingest) as p, Producer(service.ingest, binary=False) as lists:
        for i, (a, b) in enumerate(zip(cuts[:-1], cuts[1:])):
            (p if i % 2 else lists).send(X[a:b], y[a:b])
            wait_for_version(control, start + b)  # two sockets: arrival order is send order
    wait_for_version(control, start + 3000)
    net.learn(X, y)
    assert_same_weights(control, net)


def test_late_joiner_gets_current_weights_and_versions_never_go_back(service, control, rng):
    X = rng.uniform(-1, 1, (500, 3))
    y = (X[:, 0] >= 0).astype(float)
    now = control.ping() + 500
    with Producer(service.ingest) as p:
        p.send(X, y)
    wait_for_version(control, now)
    with Subscriber(service.publish, service.control, topics=("weights",),
                    timeout=RECV_TIMEOUT) as sub:
        topic, first = sub.recv(timeout=0)  # at once: the snapshot, no waiting for a publish
        assert topic == "weights" and first.version == now
        assert [w.shape for w in first.weights] == [(3, 4), (4, 1)]
        versions = [first.version]
        with Producer(service.ingest) as p:
            for i in range(20):
                p.send(X[i * 25:(i + 1) * 25], y[i * 25:(i + 1) * 25])
        while versions[-1] < now + 500:
            versions.append(sub.recv()[1].version)
    assert versions == sorted(set(versions))  # strictly increasing


def test_metrics_are_published_and_agree_with_stats(service, control):
    with Subscriber(service.publish, topics=("metrics",), timeout=RECV_TIMEOUT) as sub:
        topic, m = sub.recv()
    assert topic == "metrics"
    for key in ("version", "samples", "loss", "rolling_loss", "accuracy", "rolling_accuracy",
                "samples_per_s", "rejected", "confusion"):
        assert key in m
    stats = control.stats()
    assert stats["samples"] == stats["version"] == control.ping()
    assert sum(map(sum, stats["confusion"])) == stats["samples"]


def raw(body) -> bytes:
    return msgpack.packb(body, use_bin_type=True)


GOOD_X = [[0.1, 0.2, 0.3]]
BAD_MESSAGES = [
    ("not_msgpack", b"\xc1 not msgpack"),
    ("not_msgpack", raw({"v": 1, "x": GOOD_X, "y": [1.0]})[:-3]),  # truncated
    ("bad_message", raw([1, 2, 3])),
    ("bad_message", raw({"v": 1, "x": GOOD_X})),
    ("bad_version", raw({"v": 2, "x": GOOD_X, "y": [1.0]})),
    ("bad_array", raw({"v": 1, "x": {"dtype": "<f8", "shape": [1, 3], "data": b"\0" * 23},
                       "y": [1.0]})),
    ("bad_array", raw({"v": 1, "x": {"dtype": ">f8", "shape": [1, 3], "data": b"\0" * 24},
                       "y": [1.0]})),
    ("bad_array", raw({"v": 1, "x": "hello", "y": [1.0]})),
    ("bad_array", raw({"v": 1, "x": [[1, 2], [3]], "y": [1.0, 0.0]})),
    ("shape", raw({"v": 1, "x": [[0.1, 0.2]], "y": [1.0]})),
    ("shape", raw({"v": 1, "x": GOOD_X, "y": [1.0, 0.0]})),
    ("non_finite", protocol.encode_samples(np.array([[0.1, np.nan, 0.3]]), [1.0])),
    ("non_finite", protocol.encode_samples(np.array(GOOD_X), [np.inf])),
    ("empty", protocol.encode_samples(np.zeros((0, 3)), np.zeros(0))),
]


def test_bad_messages_are_rejected_counted_reported_and_harmless(service, control, rng):
    net = twin_of(control)
    start, before = control.ping(), control.stats()["rejected"]
    X = rng.uniform(-1, 1, (len(BAD_MESSAGES) + 1, 3))
    y = (X[:, 0] >= 0).astype(float)
    with Subscriber(service.publish, topics=("events",), timeout=RECV_TIMEOUT) as events, \
            Producer(service.ingest) as p:
        time.sleep(0.3)  # let the SUB connect before anything is published
        p.send(X[:1], y[:1])
        for i, (_, frame) in enumerate(BAD_MESSAGES):  # bad and good interleaved
            p.socket.send(frame)
            p.send(X[i + 1:i + 2], y[i + 1:i + 2])
        reported = [events.recv()[1] for _ in BAD_MESSAGES]
    wait_for_version(control, start + len(X))
    assert [e["reason"] for e in reported] == [reason for reason, _ in BAD_MESSAGES]
    assert all(e["kind"] == "rejected" and e["error"] for e in reported)
    after = control.stats()["rejected"]
    for reason in {r for r, _ in BAD_MESSAGES}:
        expected = sum(r == reason for r, _ in BAD_MESSAGES)
        assert after.get(reason, 0) - before.get(reason, 0) == expected, reason
    net.learn(X, y)
    assert_same_weights(control, net)
    assert control.ping() == start + len(X)


def test_rejected_event_names_the_producer(service):
    with Subscriber(service.publish, topics=("events",), timeout=RECV_TIMEOUT) as events, \
            Producer(service.ingest) as p:
        time.sleep(0.3)
        p.socket.send(raw({"v": 1, "x": [[1.0, 2.0]], "y": [1.0], "producer": "sensor-7",
                           "seq": 41}))
        event = events.recv()[1]
    assert (event["producer"], event["seq"], event["reason"]) == ("sensor-7", 41, "shape")
    assert "2 columns" in event["error"]


def test_control_answers_every_request(service, control, rng):
    X = rng.uniform(-1, 1, (5, 3))
    outputs, classes = control.predict(X)
    net = twin_of(control)
    np.testing.assert_allclose(outputs, net.predict(X), rtol=0, atol=1e-15)
    assert classes.tolist() == net.predict_class(X).tolist()
    with pytest.raises(ServiceError, match="unknown op 'fly'"):
        control.request("fly")
    with pytest.raises(ServiceError, match="predict needs 'x'"):
        control.request("predict")
    with pytest.raises(ServiceError, match="X has 2 columns"):
        control.predict([[1.0, 2.0]])
    with pytest.raises(ServiceError, match="--checkpoint"):
        control.save()
    # Not msgpack, over a DEALER (no REQ envelope): still an error reply, never silence.
    dealer = zmq.Context.instance().socket(zmq.DEALER)
    try:
        dealer.connect(service.control)
        dealer.send(b"\xc1")
        assert dealer.poll(int(RECV_TIMEOUT * 1000))
        reply = msgpack.unpackb(dealer.recv())
        assert reply["ok"] is False and "msgpack" in reply["error"]
    finally:
        dealer.close(linger=0)


def test_stop_and_resume_continue_from_the_checkpoint(tmp_path, rng):
    ckpt = str(tmp_path / "model.npz")
    X = rng.uniform(-1, 1, (2000, 3))
    y = (X[:, 0] >= 0).astype(float)
    with running_service(*ARGS, "--checkpoint", ckpt) as s:
        with Producer(s.ingest) as p:
            p.send(X[:1200], y[:1200])
            p.socket.send(b"junk")
        with Control(s.control, timeout=RECV_TIMEOUT) as c:
            wait_for_version(c, 1200)
        assert s.stop() == 0
        assert "stopped at version 1200" in s.log_text()
    with running_service(*ARGS, "--checkpoint", ckpt, "--resume") as s:
        with Control(s.control, timeout=RECV_TIMEOUT) as c:
            assert c.ping() == 1200
            assert c.stats()["rejected"] == {"not_msgpack": 1}
            with Producer(s.ingest) as p:
                p.send(X[1200:], y[1200:])
            wait_for_version(c, 2000)
            net = MLP(**SPEC)
            net.learn(X, y)
            assert_same_weights(c, net)
            assert c.stats()["samples"] == 2000
    with pytest.raises(RuntimeError, match="does not match"):
        with running_service("--layers", "3,5,1", "--checkpoint", ckpt, "--resume"):
            pass


def test_corrupt_checkpoint_is_refused(tmp_path):
    ckpt = tmp_path / "model.npz"
    ckpt.write_bytes(b"garbage")
    with pytest.raises(RuntimeError, match="not a streammlp network file"):
        with running_service(*ARGS, "--checkpoint", str(ckpt), "--resume"):
            pass


def test_fast_producer_is_held_back_not_dropped(rng):
    """A slowed trainer drains hundreds of alike single-sample messages at once (the one-step
    path of ``protocol.FrameTemplate``): NaN ones among them and frames of another shape still
    get their own verdicts, and the good samples train exactly as ``MLP.learn`` in order."""
    n = 20_000
    X = rng.uniform(-1, 1, (n, 3))
    y = (X[:, 0] >= 0).astype(float)
    X[::997, 1] = np.nan  # alike frames, bad numbers
    good = ~np.isnan(X).any(axis=1)
    with running_service(*ARGS, "--delay-ms", "20") as s:
        with Control(s.control, timeout=RECV_TIMEOUT) as c:
            net = twin_of(c)
            with Producer(s.ingest, timeout=60) as p:
                for i in range(n):  # one sample per message, far faster than the slowed trainer
                    if i % 1000 == 999:  # another layout, on the same socket to keep the order
                        p.socket.send(protocol.encode_samples(X[i:i + 1], y[i:i + 1], binary=False))
                    else:
                        p.send(X[i:i + 1], y[i:i + 1])
            wait_for_version(c, int(good.sum()), timeout=60)
            assert c.stats()["rejected"] == {"non_finite": int((~good).sum())}
            net.learn(X[good], y[good])
            assert_same_weights(c, net)


def test_prometheus_exposition_follows_the_metrics(rng):
    import urllib.request

    X = rng.uniform(-1, 1, (700, 3))
    with running_service(*ARGS, "--prometheus-port", "0") as s:
        with Producer(s.ingest) as p:
            p.send(X, (X[:, 0] >= 0).astype(float))
            p.socket.send(b"junk")
            p.socket.send(raw({"v": 1, "x": [[1.0]], "y": [1.0]}))
        with Control(s.control, timeout=RECV_TIMEOUT) as c:
            wait_for_version(c, 700)
            stats = c.stats()
        time.sleep(0.2)  # one more publish interval: the exporter is refreshed on publish
        with urllib.request.urlopen(s.prometheus, timeout=RECV_TIMEOUT) as response:
            text = response.read().decode()
    assert "streammlp_samples_total 700.0" in text
    assert 'streammlp_rejected_total{reason="not_msgpack"} 1.0' in text
    assert 'streammlp_rejected_total{reason="shape"} 1.0' in text
    accuracy = float(text.split("\nstreammlp_accuracy ")[1].split()[0])
    assert accuracy == pytest.approx(stats["accuracy"])


@pytest.mark.parametrize("a", [
    np.arange(6.0).reshape(2, 3), np.arange(6.0).reshape(3, 2).T, np.arange(4, dtype=np.float32),
    np.array([True, False]), np.arange(3, dtype=np.uint8), np.arange(3, dtype=">f8"),
    np.arange(4, dtype=np.float16).reshape(2, 2)])
def test_arrays_round_trip_the_wire(a):
    body = protocol.encode_array(a)
    assert body["dtype"] in protocol.ARRAY_DTYPES and len(body["data"]) == a.size * int(body["dtype"][2])
    back = protocol.decode_array("a", msgpack.unpackb(msgpack.packb(body)))
    assert back.shape == a.shape and np.array_equal(back, a)


@pytest.mark.parametrize("shape", [[], [1, 2, 3], [-1], [1.0, 3], [True], "3", [1, 2 ** 70], None])
def test_array_maps_with_impossible_shapes_are_refused(shape):
    with pytest.raises(protocol.ProtocolError, match="shape"):
        protocol.decode_array("x", {"dtype": "<f8", "shape": shape, "data": b""})


def test_resume_before_any_checkpoint_starts_afresh(tmp_path):
    with running_service(*ARGS, "--checkpoint", str(tmp_path / "none.npz"), "--resume") as s:
        with Control(s.control, timeout=RECV_TIMEOUT) as c:
            assert c.ping() == 0
        assert "starting afresh" in s.log_text()


# -- nothing silently lost, nothing falsely reported (issue 13) -------------------------------------

def free_port() -> int:
    with zmq.Context() as ctx, ctx.socket(zmq.PULL) as probe:
        port = probe.bind_to_random_port("tcp://127.0.0.1")
        probe.unbind(f"tcp://127.0.0.1:{port}")
    return port


def test_every_version_names_its_run(service, control):
    with Subscriber(service.publish, topics=("weights", "metrics"), timeout=RECV_TIMEOUT) as sub, \
            Producer(service.ingest) as p:
        time.sleep(0.3)
        p.send(*seed_rows(10))
        kinds = {}
        while len(kinds) < 2:
            topic, m = sub.recv()
            kinds[topic] = m.run if topic == "weights" else m["run"]
    run = control.request("ping")["run"]
    assert len(run) == 16 and kinds == {"weights": run, "metrics": run}
    assert control.stats()["run"] == control.snapshot().run == run


def seed_rows(n, seed=0):
    X = np.random.default_rng(seed).uniform(-1, 1, (n, 3))
    return X, (X[:, 0] >= 0).astype(float)


def test_subscribers_follow_a_restarted_service_whose_versions_went_down(tmp_path):
    ports = ["--ingest", f"tcp://127.0.0.1:{free_port()}", "--publish",
             f"tcp://127.0.0.1:{free_port()}", "--control", f"tcp://127.0.0.1:{free_port()}"]
    with running_service(*ARGS, *ports, free_ports=False) as first:
        with Producer(first.ingest) as p:
            p.send(*seed_rows(500))
        with Control(first.control, timeout=RECV_TIMEOUT) as c:
            wait_for_version(c, 500)
        sub = Subscriber(first.publish, first.control, topics=("weights",), timeout=RECV_TIMEOUT)
        try:
            _, old = sub.recv()
            assert old.version == 500
            first.stop()
            with running_service(*ARGS, *ports, free_ports=False) as second:  # fresh: version 0
                # The subscriber reconnects in its own time, and weights go out only when they
                # change: train a few rows at a time until the new run's weights reach it.
                deadline = time.monotonic() + RECV_TIMEOUT
                sent = 0
                with Producer(second.ingest) as p:
                    while True:
                        p.send(*seed_rows(5, seed=sent))
                        sent += 5
                        try:
                            _, new = sub.recv(timeout=0.2)
                        except TimeoutError:
                            assert time.monotonic() < deadline, f"no new weights after {sent} rows"
                            continue
                        if new.run != old.run:
                            break
                assert new.version <= sent < old.version  # taken although lower than 500
        finally:
            sub.close()


@pytest.mark.parametrize("damage,words", [
    (lambda b: b[:len(b) // 2], "damaged .npz file"),
    (lambda b: b[:100] + bytes([b[100] ^ 0xFF]) + b[101:], "Bad CRC-32"),
    (lambda b: b"params,1,2,3\n", "not an .npz file"),
])
def test_damaged_checkpoints_are_refused_in_one_line(tmp_path, damage, words):
    good = tmp_path / "good.npz"
    MLP(**SPEC).save(good)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(damage(good.read_bytes()))
    with pytest.raises(ValueError, match=words):
        read_model(bad)
    result = subprocess.run([sys.executable, "-m", "service", "--checkpoint", str(bad), "--resume"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert words in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("options,words", [
    (["--layers", "100000000,100000000,1"], "not enough memory for this model"),
    (["--ingest", "localhost:5600"], "not a ZeroMQ endpoint; expected transport://address"),
    (["--seed", "-1"], "--seed -1: expected 0 or more"),
])
def test_impossible_options_are_one_line_and_a_failure(options, words):
    result = subprocess.run([sys.executable, "-m", "service", *options], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert words in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_port_in_use_is_said_before_compiling(service):
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "service", "--ingest", service.ingest,
                             "--publish", "tcp://127.0.0.1:*", "--control", "tcp://127.0.0.1:*",
                             "--layers", "7,13,5"],  # a shape nothing has compiled yet
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"--ingest {service.ingest}: cannot bind: Address already in use" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert time.monotonic() - started < 15


def test_a_failing_checkpoint_is_reported_and_retried_while_serving(tmp_path):
    ckpt = tmp_path / "model.npz"
    blocker = tmp_path / "model.npz.tmp"  # a directory where the temporary file goes: open fails
    blocker.mkdir()
    with running_service(*ARGS, "--checkpoint", str(ckpt), "--checkpoint-every-s", "0.2") as s:
        with Subscriber(s.publish, topics=("events",), timeout=RECV_TIMEOUT) as events, \
                Control(s.control, timeout=RECV_TIMEOUT) as c:
            with pytest.raises(ServiceError, match="checkpoint failed: cannot write"):
                c.save()
            event = events.recv()[1]
            assert event["kind"] == "checkpoint_failed" and "cannot write" in event["error"]
            with Producer(s.ingest) as p:  # still serving
                p.send(*seed_rows(50))
            wait_for_version(c, 50)
            blocker.rmdir()
            deadline = time.monotonic() + RECV_TIMEOUT
            while not ckpt.exists():  # the timer tried again
                assert time.monotonic() < deadline
                time.sleep(0.05)
            assert c.save() == str(ckpt)
            blocker.mkdir()  # and the final checkpoint fails
        assert s.stop() == 1
    assert "the last checkpoint failed" in s.log_text()
    assert read_model(ckpt)[0].samples == 50
