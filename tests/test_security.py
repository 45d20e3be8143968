"""CurveZMQ: allowed clients train and read; everyone else gets nothing in and nothing out."""

import contextlib
import os
import shutil
import stat
import time

import numpy as np
import pytest

from streammlp.client import Control, Producer, Subscriber
from streammlp.security import keygen
from conftest import running_service

QUIET = 1.0  # seconds a refused client waits to see that nothing comes
# The shared service logs refused handshakes at most this often per socket (default 10 s: the
# log test would wait for it).
REFUSED_LOG_EVERY_S = 2.0


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    keygen(d, ["server", "client", "stranger"])
    allowed = d / "allowed"
    allowed.mkdir()
    shutil.copy(d / "client.key", allowed / "client.key")
    return d


@pytest.fixture(scope="module")
def secured(keys):
    with running_service("--layers", "3,4,1", "--curve-secret", str(keys / "server.key_secret"),
                         "--allow-keys", str(keys / "allowed"), "--publish-every-ms", "20",
                         "--refused-log-every-s", str(REFUSED_LOG_EVERY_S)) as s:
        yield s


def samples(n=100):
    X = np.random.default_rng(0).uniform(-1, 1, (n, 3))
    return X, (X[:, 0] >= 0).astype(float)


def test_allowed_client_trains_and_reads(secured, keys):
    curve = (str(keys / "client.key_secret"), str(keys / "server.key"))
    with Control(secured.control, timeout=5, curve=curve) as c:
        start = c.ping()
        with Producer(secured.ingest, curve=curve) as p:
            p.send(*samples())
        with Subscriber(secured.publish, secured.control, topics=("weights", "metrics"),
                        timeout=5, curve=curve) as sub:
            assert sub.recv()[0] == "weights"
            while True:
                topic, m = sub.recv()
                if topic == "metrics" and m["samples"] >= start + 100:
                    break
        assert c.ping() == start + 100


@pytest.mark.parametrize("who", ["unknown key", "no key", "wrong server key"])
def test_others_get_nothing_in_and_nothing_out(secured, keys, who):
    allowed = (str(keys / "client.key_secret"), str(keys / "server.key"))
    curve = {"unknown key": (str(keys / "stranger.key_secret"), str(keys / "server.key")),
             "no key": None,
             "wrong server key": (str(keys / "client.key_secret"), str(keys / "stranger.key"))}[who]
    with Control(secured.control, timeout=5, curve=allowed) as c:
        before = c.ping()
    with Producer(secured.ingest, curve=curve, timeout=QUIET) as p:
        with contextlib.suppress(ConnectionError):  # raised once the refusal is known
            p.send(*samples())
        p.close(linger=0)
    with Control(secured.control, timeout=QUIET, retries=1, curve=curve) as c:
        with pytest.raises(TimeoutError):
            c.ping()
    with Subscriber(secured.publish, topics=("weights", "metrics", "events"), timeout=QUIET,
                    curve=curve) as sub:
        with pytest.raises(TimeoutError):
            sub.recv()
    with Control(secured.control, timeout=5, curve=allowed) as c:
        assert c.ping() == before  # not one sample trained


def test_without_curve_only_loopback_is_bound(tmp_path):
    with pytest.raises(RuntimeError, match="not a loopback address"):
        with running_service("--layers", "3,4,1", "--control", "tcp://0.0.0.0:*"):
            pass


def test_keygen_makes_secret_keys_private(tmp_path):
    (tmp_path / "server.key_secret").write_text("old")
    os.chmod(tmp_path / "server.key_secret", 0o644)  # a stale file with a loose mode
    written = keygen(tmp_path, ["server", "client"])
    modes = {os.path.basename(p): stat.S_IMODE(os.stat(p).st_mode) for p in written}
    assert modes["server.key_secret"] == modes["client.key_secret"] == 0o600
    assert "secret-key" in (tmp_path / "server.key_secret").read_text()
    assert modes["server.key"] & 0o044  # public keys stay readable


@pytest.mark.parametrize("who,reason", [("unknown key", "refused this client's key"),
                                        ("no key", "CURVE"),
                                        ("wrong server key", "could not read it")])
def test_a_refused_producer_is_told_why(secured, keys, who, reason):
    curve = {"unknown key": (str(keys / "stranger.key_secret"), str(keys / "server.key")),
             "no key": None,
             "wrong server key": (str(keys / "client.key_secret"), str(keys / "stranger.key"))}[who]
    p = Producer(secured.ingest, curve=curve)
    with pytest.raises(ConnectionError, match=reason):
        p.wait_connected(timeout=5)
    with pytest.raises(ConnectionError, match=reason):
        p.send(*samples())  # known refused: nothing is queued for nobody
    p.close()


def test_an_unconfirmed_producer_raises_on_close(secured, keys):
    """Messages queued before the refusal is known are reported as not delivered on close."""
    p = Producer(secured.ingest, curve=(str(keys / "stranger.key_secret"), str(keys / "server.key")))
    p.send(*samples())  # at once: the handshake has not been answered yet
    with pytest.raises(ConnectionError, match="1 message.* not delivered.*refused this client's key"):
        p.close(linger=5000)


def test_an_allowed_producer_is_connected(secured, keys):
    with Producer(secured.ingest, curve=(str(keys / "client.key_secret"),
                                         str(keys / "server.key"))) as p:
        p.wait_connected(timeout=5)
        assert p.connected and p.refused is None


def test_the_service_logs_refused_handshakes_without_flooding(secured, keys):
    """A stranger retrying all the time is told nothing, but the service's log says so:
    at most one line per socket every --refused-log-every-s, the refusals counted in it."""

    def ingest_lines():
        return [line for line in secured.log_text()[seen:].splitlines()
                if "handshake(s) on ingest" in line]

    seen = len(secured.log_text())
    wrong = (str(keys / "client.key_secret"), str(keys / "stranger.key"))
    with Producer(secured.ingest, curve=wrong) as p:
        time.sleep(1.0)  # it reconnects and is refused every ~100-200 ms
        p.close(linger=0)
    # Wait for ingest's line: refusals on the other sockets (earlier tests') may be logged too.
    deadline = time.monotonic() + REFUSED_LOG_EVERY_S + 5
    while not ingest_lines():
        assert time.monotonic() < deadline, secured.log_text()
        time.sleep(0.1)
    time.sleep(0.5)
    lines = ingest_lines()
    assert len(lines) == 1, lines  # several refusals, one line
