"""Hostile and broken input: the decoder's contract under hypothesis, then thousands of frames at a live service."""

import os
import time

import msgpack
import numpy as np
import pytest
import zmq
from hypothesis import given, settings, strategies as st

from streammlp import MLP, protocol
from streammlp.client import Control, Producer
from conftest import running_service

RECV_TIMEOUT = 10.0

# Anything msgpack can carry, nested.
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats() | st.text(max_size=8)
    | st.binary(max_size=32),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=20)
ARRAY_MAPS = st.fixed_dictionaries({"dtype": st.sampled_from(["<f8", "<f4", "<i8", "<i4", ">f8", "f8"]),
                                    "shape": st.lists(st.integers(-2, 2**40), max_size=3),
                                    "data": st.binary(max_size=64)})
MESSAGES = st.fixed_dictionaries({"v": st.sampled_from([1, 1, 2, "1"]),
                                  "x": VALUES | ARRAY_MAPS, "y": VALUES | ARRAY_MAPS},
                                 optional={"producer": VALUES, "seq": VALUES})


def decode_contract(frame: bytes) -> None:
    """decode_samples either gives arrays or raises ProtocolError; a net's checks only InputError."""
    try:
        message = protocol.decode_samples(frame)
    except protocol.ProtocolError as e:
        assert e.reason and str(e)
        return
    assert isinstance(message.x, np.ndarray) and isinstance(message.y, np.ndarray)
    net = MLP([3, 2, 1], seed=0)
    before = net.params.copy()
    try:
        net.learn(message.x, message.y)
    except ValueError as e:
        assert getattr(e, "reason", None) and np.array_equal(net.params, before)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_are_refused_with_a_reason(frame):
    decode_contract(frame)


@settings(max_examples=400, deadline=None)
@given(MESSAGES)
def test_wrongly_typed_messages_are_refused_with_a_reason(body):
    decode_contract(msgpack.packb(body, use_bin_type=True))


@st.composite
def alike_frames(draw):
    """Frames of one shape and dtypes with random numbers, and random byte edits of some of them."""
    n, d, m = draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(2, 6))
    x_dtype, y_dtype = draw(st.sampled_from(["<f8", "<f4"])), draw(st.sampled_from(["<f8", "<i8"]))
    y_shape = draw(st.sampled_from([(n,), (n, 2)]))
    producer = draw(st.none() | st.just("sensor-1"))
    key = st.text("ab.-_9", min_size=1, max_size=draw(st.sampled_from([3, 40])))
    models = draw(st.none() | st.lists(key, min_size=m, max_size=m))  # keys of any length
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    frames = [protocol.encode_samples(rng.normal(size=(n, d)).astype(x_dtype),
                                      rng.integers(0, 2, y_shape).astype(y_dtype), producer=producer,
                                      model=models and models[i])
              for i in range(m)]
    edits = draw(st.lists(st.tuples(st.integers(0, m - 1), st.integers(0, 10**6), st.integers(0, 255)),
                          max_size=3))
    template = frames[0]
    for i, at, byte in edits:
        frame = bytearray(frames[i])
        if at % 5 == 0:  # one byte more or less
            frame = frame[:-1] if at % 2 else frame + bytes([byte])
        else:
            frame[at % len(frame)] = byte
        frames[i] = bytes(frame)
    return template, frames, bool(edits)


@settings(max_examples=400, deadline=None)
@given(alike_frames())
def test_a_frame_template_decodes_exactly_what_decode_samples_does(case):
    """FrameTemplate.decode gives the frames' samples as decode_samples reads them, or refuses."""
    template, frames, edited = case
    template = protocol.FrameTemplate(template)  # made from the first frame, before any edit
    run = template.decode(b"".join(frames), [len(frame) for frame in frames])
    one_by_one = [protocol.decode_samples(frame) for frame in frames if valid(frame)]
    keys = [m.model for m in one_by_one]
    if run is None:
        # Alike but for their numbers, and keys of under 32 characters, must decode.
        assert edited or max(map(len, keys), default=0) >= 32 and len(set(keys)) > 1
        return
    assert len(one_by_one) == len(frames)  # a template never takes an invalid frame
    for name in "xy":
        expected = np.concatenate([getattr(m, name) for m in one_by_one])
        got = getattr(run, name)
        assert got.dtype == expected.dtype and got.shape == expected.shape
        assert got.tobytes() == expected.tobytes()  # bit for bit, NaN payloads too
    assert run.producer == one_by_one[0].producer
    assert (list(run.model) if isinstance(run.model, protocol.KeySpans) else [run.model] * len(frames)) == keys


def valid(frame: bytes) -> bool:
    try:
        protocol.decode_samples(frame)
        return True
    except protocol.ProtocolError:
        return False


def hostile_frames(rng: np.random.Generator, count: int) -> list[bytes]:
    """Malformed and hostile frames of every kind, none of them trainable."""
    good = protocol.encode_samples(np.zeros((2, 3)), np.zeros(2))
    kinds = [
        lambda: rng.bytes(int(rng.integers(0, 300))),
        lambda: good[:int(rng.integers(0, len(good)))],  # truncated
        lambda: b"\x91" * int(rng.integers(500, 5000)) + b"\x00",  # deep nesting
        lambda: bytes([rng.choice([0xc6, 0xdb, 0xdd, 0xdf])]) + b"\xff\xff\xff\xf0",  # 4 GB declared
        lambda: msgpack.packb({"v": 1, "x": {"dtype": "<f8", "shape": [10**9, 3], "data": b"\0" * 24},
                               "y": [0.0]}),  # enormous batch declared, few bytes sent
        lambda: msgpack.packb({"v": 1, "x": [[1, 2, 3]], "y": [[[[0]]]]}),
        lambda: msgpack.packb({1: 2, "v": 1}),  # non-string key
        lambda: protocol.encode_samples(np.array([[1.0, np.inf, 0.0]]), [0.0]),
        lambda: protocol.encode_samples(np.zeros((1, 3)), [np.nan]),
        lambda: protocol.encode_samples(np.zeros((3, 5)), np.zeros(3)),  # wrong width
    ]
    return [kinds[int(rng.integers(0, len(kinds)))]() for _ in range(count)]


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads memory from /proc")
def test_thousands_of_hostile_frames_on_every_socket(tmp_path, rng):
    bad = hostile_frames(rng, 3000)
    X = rng.uniform(-1, 1, (300 * 4, 3))
    y = (X[:, 0] >= 0).astype(float)
    enormous = np.zeros((1_000_000, 3))
    enormous[-1, -1] = np.nan  # 24 MB of rows, rejected whole for its last value
    args = ("--layers", "3,4,1", "--lr", "1", "--seed", "5", "--checkpoint", str(tmp_path / "m.npz"),
            "--ingest-acked", "tcp://127.0.0.1:*")
    context = zmq.Context.instance()
    with running_service(*args) as s, Control(s.control, timeout=RECV_TIMEOUT) as control:
        start_rss = rss_kib(s.proc.pid)
        dealer, control_dealer = context.socket(zmq.DEALER), context.socket(zmq.DEALER)
        try:
            dealer.connect(s.acked)
            control_dealer.connect(s.control)
            with Producer(s.ingest) as p:
                for i, frame in enumerate(bad):
                    p.socket.send(frame)
                    dealer.send(frame)
                    control_dealer.send(frame)
                    if i % 10 == 0:  # good messages interleaved with the bad
                        j = i // 10
                        p.send(X[j * 4:(j + 1) * 4], y[j * 4:(j + 1) * 4])
                p.send(enormous, np.zeros(len(enormous)))
                dealer.send_multipart([b"three", b"frames", b"at once"])
            replies = 0
            while replies < len(bad) and control_dealer.poll(int(RECV_TIMEOUT * 1000)):
                reply = msgpack.unpackb(control_dealer.recv())
                assert reply["ok"] is False and reply["error"]
                replies += 1
            assert replies == len(bad)  # every malformed request got an error reply
            deadline = time.monotonic() + 60
            while sum(control.stats()["rejected"].values()) < 2 * len(bad) + 2:
                assert time.monotonic() < deadline, control.stats()["rejected"]
                time.sleep(0.05)
            stats, snap = control.stats(), control.snapshot()
            grown_mib = (rss_kib(s.proc.pid) - start_rss) / 1024
        finally:
            dealer.close(linger=0)
            control_dealer.close(linger=0)
        assert s.proc.poll() is None  # still up
    assert sum(stats["rejected"].values()) == 2 * len(bad) + 2  # each counted once, by reason
    assert stats["samples"] == len(X)
    net = MLP([3, 4, 1], lr=1.0, seed=5)
    net.learn(X, y)
    for mine, theirs in zip(net.weights + net.biases, snap.weights + snap.biases):
        assert np.array_equal(theirs, mine)  # as if the bad frames had never been sent
    assert grown_mib < 300, f"service memory grew by {grown_mib:.0f} MiB"
