"""Training from a NATS JetStream stream: exactly once under kill -9, faults, shards.

One real ``nats-server -js`` for the module (loopback, a free port, a temporary
store), stopped at the end; each test uses streams of its own. The oracle is
``MLP.learn`` (or one unsharded trainer) on the same rows in stream order.
"""

import functools
import shutil
import socket
import subprocess
import time

import msgpack
import numpy as np
import pytest

pytest.importorskip("nats", reason="the nats extra (nats-py) is not installed")

from nats.js.errors import NotFoundError  # noqa: E402
from natsserver import NatsServer, binary  # noqa: E402

from conftest import running_service  # noqa: E402
from streammlp import MLP, checkpoint, cli, protocol  # noqa: E402
from streammlp.client import Control  # noqa: E402
from streammlp.fleet import Fleet  # noqa: E402
from streammlp.jetstream import Connection, StreamProducer, call, ensure_stream  # noqa: E402

pytestmark = pytest.mark.skipif(binary() is None, reason="no nats-server (the nats extra)")

RECV_TIMEOUT = 10.0
WAIT = 30.0  # seconds a service has to train what it was given
NET = ("--layers", "3,4,1", "--lr", "1", "--seed", "2")


@pytest.fixture(scope="module")
def server():
    with NatsServer() as s:
        yield s


def rows(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, (n, 3))
    return X, (X[:, 0] >= 0).astype(float)


def make_stream(url: str, name: str, partitions: int = 1, prefix: str | None = None) -> None:
    call(Connection(url), lambda js: ensure_stream(js, name, partitions, prefix or name.lower()))


def serve(url: str, stream: str, ckpt, *more: str):
    return running_service(*NET, "--source", url, "--stream", stream, "--checkpoint", str(ckpt),
                           "--checkpoint-every-s", "0.1", "--publish-every-ms", "50", *more)


def wait_for(control: Control, done, what: str, timeout: float = WAIT) -> dict:
    """Poll ``stats`` until ``done(stats)``; the last stats, or a failure saying ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        stats = control.stats()
        if done(stats):
            return stats
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout} s; last stats {stats}")
        time.sleep(0.05)


def assert_weights_of(control: Control, X, y) -> None:
    net = MLP([3, 4, 1], lr=1.0, seed=2)
    net.learn(X, y)
    snap = control.snapshot()
    assert snap.version == len(X)
    for mine, theirs in zip(net.weights + net.biases, snap.weights + snap.biases):
        assert np.array_equal(theirs, mine)  # exact: every sample once, in stream order


def test_kill_9_at_random_points_gives_the_weights_of_an_uninterrupted_run(server, tmp_path):
    rng = np.random.default_rng(11)
    messages, per = 1500, 4
    X, y = rows(messages * per, seed=1)
    make_stream(server.url, "KILL")
    ckpt = tmp_path / "model.npz"
    with StreamProducer(server.url, "kill.sensor") as producer:
        # Half the stream is there before the first start (a replay); the rest arrives live,
        # between and during the runs.
        for i in range(messages // 2):
            producer.send(X[i * per:(i + 1) * per], y[i * per:(i + 1) * per])
        producer.flush()
        sent, resume = messages // 2, ()
        for run in range(4):
            with serve(server.url, "KILL", ckpt, "--delay-ms", "2", *resume) as s:
                resume = ("--resume",)
                # publish live for a random while, then kill -9: a batch in flight, some
                # applied, some checkpointed
                until = time.monotonic() + rng.uniform(0.1, 0.6)
                while sent < messages and time.monotonic() < until:
                    producer.send(X[sent * per:(sent + 1) * per], y[sent * per:(sent + 1) * per])
                    sent += 1
                    if sent % 50 == 0:
                        producer.flush()
                producer.flush()
                if run < 3:
                    s.proc.kill()
                    s.proc.wait()
                    continue
                while sent < messages:
                    producer.send(X[sent * per:(sent + 1) * per], y[sent * per:(sent + 1) * per])
                    sent += 1
                last = producer.flush()
                with Control(s.control, timeout=RECV_TIMEOUT) as c:
                    stats = wait_for(c, lambda m: m["source"]["applied"] == last, "all applied")
                    assert stats["samples"] == messages * per  # none twice, none lost
                    assert stats["source"]["connected"] and stats["source"]["error"] is None
                    assert_weights_of(c, X, y)


def test_a_stop_mid_replay_checkpoints_what_was_applied_and_resume_goes_on(server, tmp_path):
    messages = 3000  # 6 fetches of 512, each trained a pause apart
    X, y = rows(messages, seed=4)
    make_stream(server.url, "STOP")
    with StreamProducer(server.url, "stop.x") as producer:
        for i in range(messages):
            producer.send(X[i:i + 1], y[i:i + 1])
        last = producer.flush()
    ckpt = tmp_path / "m.npz"
    with serve(server.url, "STOP", ckpt, "--delay-ms", "300") as s, \
            Control(s.control, timeout=RECV_TIMEOUT) as c:
        wait_for(c, lambda m: m["samples"] > 0, "a first batch")
        assert s.stop() == 0  # with batches still queued by the reader
    saved = checkpoint.read(ckpt)
    applied = saved["extra"]["source"]["applied"]
    assert 0 < applied < last and saved["samples"] == applied  # one row a message
    with serve(server.url, "STOP", ckpt, "--resume") as s, Control(s.control, timeout=RECV_TIMEOUT) as c:
        wait_for(c, lambda m: m["source"]["applied"] == last, "all applied")
        assert_weights_of(c, X, y)


def test_bad_frames_and_deleted_messages_are_counted_and_reading_goes_on(server, tmp_path):
    X, y = rows(60)
    make_stream(server.url, "BAD")
    with StreamProducer(server.url, "bad.one") as producer:
        for i in range(6):
            producer.send(X[i * 10:(i + 1) * 10], y[i * 10:(i + 1) * 10])
            if i == 1:
                producer.send_frame(b"\xc1 not msgpack")
                producer.send(np.ones((2, 5)), np.ones(2))  # 5 inputs: this net takes 3
            if i == 3:
                producer.send_frame(msgpack.packb({"v": 1, "x": [[0.0] * 3]}))  # no y
                doomed = producer.flush() + 1
                producer.send(X[:10], y[:10])  # deleted below: never trained
        last = producer.flush()
    assert call(Connection(server.url), lambda js: js.delete_msg("BAD", doomed))
    with serve(server.url, "BAD", tmp_path / "m.npz") as s, \
            Control(s.control, timeout=RECV_TIMEOUT) as c:
        stats = wait_for(c, lambda m: m["source"]["applied"] == last, "all applied")
        assert stats["rejected"] == {"not_msgpack": 1, "shape": 1, "bad_message": 1}
        assert stats["source"]["missing"] == 1
        assert_weights_of(c, X, y)
    log = s.log_text()
    assert f"sequences {doomed}-{doomed} were deleted" in log and "caught up with BAD" in log


def test_a_stream_that_does_not_exist_is_reported_and_waited_for(server, tmp_path):
    with serve(server.url, "LATER", tmp_path / "m.npz") as s, \
            Control(s.control, timeout=RECV_TIMEOUT) as c:
        stats = wait_for(c, lambda m: m["source"]["error"] is not None, "an error")
        assert "stream LATER does not exist" in stats["source"]["error"]
        assert "streammlp stream create" in stats["source"]["error"]
        assert c.ping() == 0  # control answers meanwhile
        make_stream(server.url, "LATER")
        X, y = rows(30)
        with StreamProducer(server.url, "later.x") as producer:
            producer.send(X, y)
        wait_for(c, lambda m: m["samples"] == 30, "trained once the stream exists")
        assert_weights_of(c, X, y)
    assert "stream LATER does not exist" in s.log_text()  # said once, in the log too


def test_server_down_at_start_and_restarted_mid_run(server, tmp_path):
    X, y = rows(400)
    make_stream(server.url, "DOWN")
    with StreamProducer(server.url, "down.x") as producer:
        producer.send(X[:100], y[:100])
    server.stop()
    try:
        with serve(server.url, "DOWN", tmp_path / "m.npz") as s, \
                Control(s.control, timeout=RECV_TIMEOUT) as c:
            stats = wait_for(c, lambda m: m["source"]["error"] is not None, "an error")
            assert not stats["source"]["connected"] and "cannot reach NATS" in stats["source"]["error"]
            server.start()  # same port, same store
            wait_for(c, lambda m: m["samples"] == 100, "trained once the server is up")
            server.stop()
            stats = wait_for(c, lambda m: not m["source"]["connected"], "disconnected")
            assert c.ping() == 100  # control answers while NATS is down
            server.start()
            with StreamProducer(server.url, "down.x") as producer:
                for i in range(1, 4):
                    producer.send(X[i * 100:(i + 1) * 100], y[i * 100:(i + 1) * 100])
            stats = wait_for(c, lambda m: m["samples"] == 400, "trained after the restart")
            assert stats["source"]["connected"]
            assert_weights_of(c, X, y)
            assert s.stop() == 0  # a clean exit, whatever the source went through
        assert "cannot reach NATS" in s.log_text() and "reconnected" in s.log_text()
    finally:
        if server.proc.poll() is not None:
            server.start()


def test_a_service_whose_server_never_comes_stops_cleanly(tmp_path):
    nowhere = socket.socket()
    nowhere.bind(("127.0.0.1", 0))  # a port of no server (bound, never listening)
    try:
        url = f"nats://127.0.0.1:{nowhere.getsockname()[1]}"
        with serve(url, "S", tmp_path / "m.npz") as s, Control(s.control, timeout=RECV_TIMEOUT) as c:
            stats = wait_for(c, lambda m: m["source"]["error"] is not None, "an error")
            assert "cannot reach NATS" in stats["source"]["error"]
            assert s.stop() == 0  # not killed after its stop timeout: the reader let go
        assert "source: cannot reach NATS" in s.log_text()  # said (once) in the log too
    finally:
        nowhere.close()


def test_two_shards_train_the_same_models_as_one_trainer(server, tmp_path):
    keys, per_key = 1000, 2  # the issue: 2 shards x 1,000 keys
    result = cli.main(["stream", "create", server.url, "--stream", "SHARDS", "--partitions", "2"])
    assert result == 0
    rng = np.random.default_rng(5)
    X, y = rows(keys * per_key * 4, seed=3)
    with StreamProducer(server.url, "samples.k0") as producer:
        for j in range(keys * per_key):  # every key, then keys at random; 4 rows a message
            key = j if j < keys else rng.integers(keys)
            producer.send(X[j * 4:(j + 1) * 4], y[j * 4:(j + 1) * 4], f"samples.k{key}")
        last = producer.flush()
    runs = {"all": (), "0": ("--shard", "0/2"), "1": ("--shard", "1/2")}
    services = {name: serve(server.url, "SHARDS", tmp_path / f"{name}.npz", "--keyed", *extra)
                for name, extra in runs.items()}
    try:
        controls = {name: Control(s.control, timeout=RECV_TIMEOUT) for name, s in services.items()}
        wait_for(controls["all"], lambda m: m["source"]["next"] == last + 1, "one trainer done")
        deadline = time.monotonic() + WAIT
        while sum(controls[i].stats()["samples"] for i in "01") < len(X):
            assert time.monotonic() < deadline, "the shards did not train every message"
            time.sleep(0.05)
        for c in controls.values():
            c.close()
    finally:
        for s in services.values():
            s.stop()  # final checkpoint
    fleets = {name: Fleet.from_state(checkpoint.read(tmp_path / f"{name}.npz")) for name in runs}
    one, shards = fleets["all"], [fleets["0"], fleets["1"]]
    assert not set(shards[0].keys) & set(shards[1].keys)  # no overlap ...
    assert set(shards[0].keys) | set(shards[1].keys) == set(one.keys)  # ... and no gap
    assert len(one.keys) == keys and min(len(f.keys) for f in shards) > keys // 3
    assert sum(f.totals()[0] for f in shards) == one.totals()[0] == len(X)
    for shard in shards:
        for key in shard.keys:
            mine, theirs = one.view(one.slots[key]), shard.view(shard.slots[key])
            for a, b in zip(mine.weights + mine.biases, theirs.weights + theirs.biases):
                assert np.array_equal(a, b)


def test_publish_kv_keeps_every_models_newest_weights_in_a_bucket(server, tmp_path):
    make_stream(server.url, "KV")
    X, y = rows(90)
    with StreamProducer(server.url, "kv.a") as producer:
        for i, key in enumerate(["a", "b", "c"] * 3):
            producer.send(X[i * 10:(i + 1) * 10], y[i * 10:(i + 1) * 10], f"kv.{key}")
    with serve(server.url, "KV", tmp_path / "m.npz", "--keyed", "--publish-kv", "WEIGHTS") as s, \
            Control(s.control, timeout=RECV_TIMEOUT) as c:
        wait_for(c, lambda m: m["samples"] == 90, "all trained")

        async def entries(js):
            kv = await js.key_value("WEIGHTS")
            return {key: msgpack.unpackb((await kv.get(key)).value) for key in "abc"}
        deadline = time.monotonic() + WAIT
        while True:  # written within KV_EVERY_S of the publish
            try:
                stored = call(Connection(server.url), entries)
                if all(body["version"] == 30 for body in stored.values()):
                    break
            except NotFoundError:  # the bucket or a key not there yet
                pass
            assert time.monotonic() < deadline, "the bucket never held every model's weights"
            time.sleep(0.1)
        for key, body in stored.items():
            theirs, mine = protocol.decode_weights(body), c.snapshot(key)
            assert theirs.model == key
            for a, b in zip(theirs.weights + theirs.biases, mine.weights + mine.biases):
                assert np.array_equal(a, b)


def test_stream_create_refuses_another_layout_and_feed_makes_a_missing_stream(server, tmp_path,
                                                                              capsys):
    assert cli.main(["stream", "create", server.url, "--stream", "LAY", "--partitions", "2",
                     "--subject-prefix", "lay"]) == 0
    assert "made" in capsys.readouterr().out
    assert cli.main(["stream", "create", server.url, "--stream", "LAY", "--partitions", "3",
                     "--subject-prefix", "lay"]) == 2
    assert "exists with another layout" in capsys.readouterr().err
    X, y = rows(50)
    np.savez(tmp_path / "d.npz", X=X, y=y)
    assert cli.main(["feed", str(tmp_path / "d.npz"), "--to", server.url, "--subject", "fresh.s1",
                     "--stream", "FRESH", "--batch", "10"]) == 0
    out = capsys.readouterr().out
    assert "made stream FRESH" in out and "last sequence is 5" in out
    info = call(Connection(server.url), lambda js: js.stream_info("FRESH"))
    assert info.state.messages == 5
    frame = call(Connection(server.url), lambda js: js.get_msg("FRESH", 2)).data
    assert np.array_equal(protocol.decode_samples(frame).x, X[10:20])


def test_options_are_checked_before_anything_starts(tmp_path):
    from service.serve import build, parse_args

    def refused(*argv: str) -> str:
        with pytest.raises(ValueError) as e:
            build(parse_args([*NET, *argv]))
        return str(e.value)

    assert "--checkpoint" in refused("--source", "nats://127.0.0.1:1", "--stream", "S")
    assert "--stream NAME" in refused("--source", "nats://127.0.0.1:1", "--checkpoint", "c")
    assert "nats://HOST:PORT" in refused("--source", "http://x", "--stream", "S", "--checkpoint", "c")
    assert "--from" in refused("--source", "nats://h:1", "--stream", "S", "--checkpoint", "c",
                               "--from", "last")
    assert "I/N" in refused("--source", "nats://h:1", "--stream", "S", "--checkpoint", "c",
                            "--shard", "2/2")
    assert "drop --ingest" in refused("--source", "nats://h:1", "--stream", "S", "--checkpoint", "c",
                                      "--ingest", "tcp://127.0.0.1:5599")
    assert "goes with --source" in refused("--stream", "S")
    assert "--publish-kv goes with --source" in refused("--publish-kv", "W")


def certificates(tmp_path) -> dict[str, str]:
    """A CA, and a server (127.0.0.1) and a client certificate it signed: PEM files by name."""
    if shutil.which("openssl") is None:
        pytest.skip("no openssl command to make the test certificates")
    names = {name: str(tmp_path / f"{name}.pem") for name in
             ("ca", "ca-key", "server", "server-key", "client", "client-key")}
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl = functools.partial(subprocess.run, check=True, capture_output=True, timeout=30)
    openssl(["openssl", "req", "-x509", *key, "-keyout", names["ca-key"], "-out", names["ca"],
             "-days", "1", "-subj", "/CN=streammlp test CA"])
    for who, extension in (("server", "subjectAltName=IP:127.0.0.1"),
                           ("client", "extendedKeyUsage=clientAuth")):
        request = str(tmp_path / f"{who}.csr")
        openssl(["openssl", "req", *key, "-keyout", names[f"{who}-key"], "-out", request,
                 "-subj", f"/CN={who}"])
        (tmp_path / f"{who}.ext").write_text(extension + "\n")
        openssl(["openssl", "x509", "-req", "-in", request, "-CA", names["ca"], "-CAkey",
                 names["ca-key"], "-CAcreateserial", "-out", names[who], "-days", "1",
                 "-extfile", str(tmp_path / f"{who}.ext")])
    return names


def test_tls_with_a_client_certificate(tmp_path):
    """A server that requires TLS and verifies clients: the service trains with the CA and its
    certificate (--nats-tls-*), and says why it cannot read the stream without them."""
    pem = certificates(tmp_path)
    tls = ("--tlsverify", "--tlscert", pem["server"], "--tlskey", pem["server-key"],
           "--tlscacert", pem["ca"])
    X, y = rows(200)
    with NatsServer(options=tls) as server:
        trusted = Connection(server.url, tls_ca=pem["ca"], tls_cert=pem["client"],
                             tls_key=pem["client-key"])
        call(trusted, lambda js: ensure_stream(js, "TLS", 1, "tls"))
        with StreamProducer(trusted, "tls.x") as producer:
            producer.send(X, y)
            assert producer.flush() == 1
        client = ("--nats-tls-ca", pem["ca"], "--nats-tls-cert", pem["client"],
                  "--nats-tls-key", pem["client-key"])
        with serve(server.url, "TLS", tmp_path / "a.npz", *client) as s, \
                Control(s.control, timeout=RECV_TIMEOUT) as c:
            wait_for(c, lambda m: m["samples"] == 200, "trained over TLS")
            assert_weights_of(c, X, y)
        # The CA alone: the server refuses a client without a certificate.
        with serve(server.url, "TLS", tmp_path / "b.npz", "--nats-tls-ca", pem["ca"]) as s, \
                Control(s.control, timeout=RECV_TIMEOUT) as c:
            stats = wait_for(c, lambda m: m["source"]["error"] is not None, "an error")
            assert stats["samples"] == 0 and not stats["source"]["connected"]
            assert "cannot reach NATS" in stats["source"]["error"]
