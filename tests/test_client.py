"""The client library tells the truth: what it sends arrives whole, or it says it did not."""

import pathlib
import re
import time

import numpy as np
import pytest
import zmq

from streammlp import MLP, protocol
from streammlp.client import Control, Producer, Subscriber
from conftest import running_service, seed_stream

SPEC = dict(layers=[3, 4, 1], lr=1.0, seed=2)
TIMEOUT = 20.0
README = pathlib.Path(__file__).parent.parent / "README.md"


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    ckpt = tmp_path_factory.mktemp("client") / "model.npz"
    with running_service("--layers", "3,4,1", "--lr", "1", "--seed", "2", "--publish-every-ms", "20",
                         "--ingest-acked", "tcp://127.0.0.1:*", "--checkpoint", str(ckpt)) as s:
        yield s


def wait_for_version(control, version: int, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while control.ping() < version:
        if time.monotonic() > deadline:
            raise TimeoutError(f"service stuck at version {control.ping()}, expected {version}")
        time.sleep(0.02)


def twin_of(control) -> MLP:
    net = MLP(**SPEC)
    snap = control.snapshot()
    for mine, theirs in zip(net.weights + net.biases, snap.weights + snap.biases):
        mine[...] = theirs
    return net


def test_a_batch_over_the_frame_cap_arrives_whole_and_in_order(service):
    """2.5M x 3 rows is over the 64 MiB frame cap: it used to vanish without a word."""
    X, y = seed_stream(2_500_000, seed=7)
    with Control(service.control, timeout=TIMEOUT) as c:
        net, start = twin_of(c), c.ping()
        with Producer(service.ingest, timeout=TIMEOUT) as p:
            p.send(X, y)
        assert p.sent == 3  # MAX_ROWS rows at most in each
        wait_for_version(c, start + len(X), timeout=60)
        net.learn(X, y)
        snap = c.snapshot()
        assert c.stats()["rejected"] == {}
    for mine, theirs in zip(net.weights + net.biases, snap.weights + snap.biases):
        np.testing.assert_allclose(theirs, mine, rtol=0, atol=1e-12)


@pytest.mark.parametrize("binary", [True, False])
def test_encode_batch_splits_under_both_limits_in_order(binary, monkeypatch):
    """Over MAX_ROWS (1.5M rows was counted too_large) or over the bytes: parts, in order."""
    monkeypatch.setattr(protocol, "MAX_ROWS", 100)
    X = np.arange(3 * 1000, dtype=float).reshape(-1, 3) + 0.5
    y = np.arange(len(X), dtype=float)
    for rows, cap in [(1000, 1 << 30), (1000, 3000)]:  # the rows limit, then the bytes limit
        monkeypatch.setattr(protocol, "MAX_MESSAGE_BYTES", cap)
        frames = list(protocol.encode_batch(X[:rows], y[:rows], producer="p", seq=7, binary=binary))
        decoded = [protocol.decode_samples(f) for f in frames]
        assert len(frames) >= 10 and all(len(f) <= cap for f in frames)
        assert all(len(m.x) <= 100 for m in decoded)
        assert [m.seq for m in decoded] == list(range(7, 7 + len(frames)))
        assert np.array_equal(np.concatenate([m.x for m in decoded]), X[:rows])
        assert np.array_equal(np.concatenate([m.y for m in decoded]), y[:rows])
    assert len(list(protocol.encode_batch(X[:5], y[:5]))) == 1
    with pytest.raises(ValueError, match="one row of X takes"):
        list(protocol.encode_batch(np.zeros((300, 400)), np.zeros(300)))
    with pytest.raises(ValueError, match="one target per row"):
        list(protocol.encode_batch(X, y[:-1]))


def test_a_producer_with_no_service_says_nothing_was_delivered():
    with zmq.Context() as ctx, ctx.socket(zmq.PULL) as probe:  # a port nobody listens on
        port = probe.bind_to_random_port("tcp://127.0.0.1")
        probe.unbind(f"tcp://127.0.0.1:{port}")
    p = Producer(f"tcp://127.0.0.1:{port}")
    with pytest.raises(TimeoutError, match="no service answered"):
        p.wait_connected(timeout=0.3)
    p.send(*seed_stream(10))
    started = time.monotonic()
    with pytest.raises(ConnectionError, match="1 message.* not delivered"):
        p.close(linger=500)
    assert time.monotonic() - started < 5


def test_a_producer_knows_it_is_connected(service):
    with Producer(service.ingest) as p:
        p.wait_connected(timeout=TIMEOUT)
        assert p.connected and p.refused is None


def test_subscriber_takes_a_new_runs_weights_whatever_their_version():
    """A restarted service counts versions from 0 (or from an older checkpoint) in a new run."""
    with zmq.Context() as ctx, ctx.socket(zmq.PUB) as pub:
        port = pub.bind_to_random_port("tcp://127.0.0.1")
        with Subscriber(f"tcp://127.0.0.1:{port}", topics=("weights",), timeout=TIMEOUT) as sub:
            net = MLP(**SPEC)
            published = [("a", 100), ("a", 90), ("b", 5), ("b", 5), ("b", 6), ("a", 101)]
            received = []
            deadline = time.monotonic() + TIMEOUT
            while not received:  # until the subscription has reached the publisher
                assert time.monotonic() < deadline
                pub.send_multipart([protocol.WEIGHTS, protocol.pack(
                    protocol.weights_body(net, 100, run="a"))])
                try:
                    received.append(sub.recv(timeout=0.05))
                except TimeoutError:
                    pass
            for run, version in published[1:]:
                pub.send_multipart([protocol.WEIGHTS, protocol.pack(
                    protocol.weights_body(net, version, run=run))])
            for _ in range(3):
                received.append(sub.recv())
    assert [(w.run, w.version) for _, w in received] == [("a", 100), ("b", 5), ("b", 6), ("a", 101)]


@pytest.mark.parametrize("topics", ["weights", ("metric",), ()])
def test_subscriber_refuses_topics_the_service_never_publishes(topics):
    with pytest.raises(ValueError, match="expected a tuple of some of"):
        Subscriber("tcp://127.0.0.1:1", topics=topics)


def test_the_readme_client_example_runs_as_written(service):
    code = README.read_text().split("### Client library\n\n```python\n")[1].split("```")[0]
    for default, real in {"5555": service.ingest, "5556": service.publish,
                          "5557": service.control, "5558": service.acked}.items():
        code = code.replace(f'"tcp://127.0.0.1:{default}"', repr(real))
    assert not re.search(r"127\.0\.0\.1:55\d\d", code)
    X, y = seed_stream(300, seed=8)
    scope = {"X": X, "y": y}
    exec(compile(code, str(README), "exec"), scope)
    assert scope["weights"].version >= scope["trained"] >= 300
    assert scope["outputs"].shape == (5, 1)


def test_leaving_a_reliable_producer_waits_until_its_messages_are_durable(service):
    from streammlp.client import ReliableProducer

    with Control(service.control, timeout=TIMEOUT) as c:
        start = c.ping()
        with ReliableProducer(service.acked, "leaver", timeout=TIMEOUT) as p:
            p.send(*seed_stream(40))
        assert not p.pending  # acknowledged as on disk, not dropped at close
        assert c.ping() == start + 40


def test_a_producer_at_the_wrong_kind_of_endpoint_is_told_so(service):
    p = Producer(service.acked)  # PUSH to the acknowledged ingest's ROUTER: no handshake
    with pytest.raises((TimeoutError, ConnectionError), match="endpoint for this kind of client"):
        p.wait_connected(timeout=1)
    p.close(linger=0)
