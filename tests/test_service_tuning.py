"""The service with online input scaling (--scale) and with a race of configurations (--race)."""

import copy
import time

import numpy as np
import pytest

from service.models import OneModel
from streammlp import MLP, Race
from streammlp.client import Control, Producer, Subscriber
from conftest import assert_same_state, running_service

RECV_TIMEOUT = 10.0


def wait_for(control, version):
    deadline = time.monotonic() + RECV_TIMEOUT
    while control.ping() < version:
        assert time.monotonic() < deadline
        time.sleep(0.01)


def unscaled_stream(n, rng):
    X = rng.uniform(-1, 1, (n, 3)) * [1e-3, 1.0, 1e5] + [0.0, 0.0, 3e5]
    return X, (X[:, 0] >= 0).astype(float)


def test_scaled_service_trains_and_publishes_like_a_scaled_mlp(rng):
    X, y = unscaled_stream(2000, rng)
    with running_service("--layers", "3,4,1", "--lr", "1", "--seed", "4", "--scale", "standard") as s, \
            Control(s.control, timeout=RECV_TIMEOUT) as control:
        with Producer(s.ingest) as p:
            for i in range(0, 2000, 100):
                p.send(X[i:i + 100], y[i:i + 100])
        wait_for(control, 2000)
        snap = control.snapshot()
        outputs, _ = control.predict(X[:5])
    net = MLP([3, 4, 1], lr=1.0, seed=4, scale="standard")
    net.learn(X, y)
    for mine, theirs in zip(net.weights + net.biases, snap.weights + snap.biases):
        np.testing.assert_allclose(theirs, mine, rtol=0, atol=1e-12)
    np.testing.assert_allclose(snap.scaler_mean, net.scaler_mean, rtol=1e-12)
    np.testing.assert_allclose(snap.scaler_var, net.scaler_var, rtol=1e-12)
    np.testing.assert_allclose(outputs, net.predict(X[:5]), rtol=0, atol=1e-12)
    # What a subscriber does with the published scaler: the same outputs as the service.
    Z = np.where(snap.scaler_var > 0, (X[:5] - snap.scaler_mean) / np.sqrt(np.where(
        snap.scaler_var > 0, snap.scaler_var, 1)), 0.0)
    plain = MLP([3, 4, 1], seed=0)
    for mine, theirs in zip(plain.weights + plain.biases, snap.weights + snap.biases):
        mine[...] = theirs
    np.testing.assert_allclose(plain.predict(Z), outputs, rtol=0, atol=1e-9)


def test_race_service_serves_the_leader_and_publishes_every_member(tmp_path, rng):
    X, y = unscaled_stream(3000, rng)
    args = ("--layers", "3,1", "--race", "--seed", "6", "--publish-every-ms", "20",
            "--checkpoint", str(tmp_path / "race.npz"))
    with running_service(*args) as s, Control(s.control, timeout=RECV_TIMEOUT) as control:
        with Producer(s.ingest) as p:
            p.send(X[:2000], y[:2000])
        wait_for(control, 2000)
        with Subscriber(s.publish, topics=("metrics",), timeout=RECV_TIMEOUT) as sub:
            metrics = sub.recv()[1]
        snap = control.snapshot()
        assert s.stop() == 0
    race = Race.grid(3, 1, seed=6)
    race.learn(X[:2000], y[:2000])
    assert race.leader == metrics["race"]["leader"]
    assert len(metrics["race"]["members"]) == len(race.members)
    assert_serves_the_leader(snap, race)
    # The race resumes from its checkpoint and goes on exactly.
    snap = resume_and_send(args, X, y, 2000)
    race.learn(X[2000:], y[2000:])
    assert_serves_the_leader(snap, race)


def test_a_race_resumes_with_its_own_grid_and_only_with_its_options(tmp_path, rng):
    """A race checkpointed under another grid (another version's defaults) resumes with its
    own members and goes on exactly; one of other outputs or loss is refused."""
    X, y = unscaled_stream(1200, rng)
    race = Race.grid(3, 1, lrs=(0.5,), hidden=(4,), linear=(0.01,), seed=6)
    race.learn(X[:1000], y[:1000])
    ckpt = tmp_path / "race.npz"
    race.save(ckpt)
    args = ("--layers", "3,1", "--race", "--checkpoint", str(ckpt))
    snap = resume_and_send(args, X, y, 1000)
    race.learn(X[1000:], y[1000:])
    assert len(race.members) == 2
    assert_serves_the_leader(snap, race)
    with pytest.raises(RuntimeError, match="does not match"):
        with running_service(*args, "--resume", "--output", "identity", "--loss", "sse"):
            pass


def resume_and_send(args, X, y, done: int):
    """The snapshot of the service of ``args`` resumed at ``done`` rows of ``X``, once it has
    trained the rest."""
    with running_service(*args, "--resume") as s, Control(s.control, timeout=RECV_TIMEOUT) as control:
        assert control.ping() == done
        with Producer(s.ingest) as p:
            p.send(X[done:], y[done:])
        wait_for(control, len(X))
        return control.snapshot()


def assert_serves_the_leader(snap, race):
    leader = race.leader_net
    assert snap.member == race.leader
    for mine, theirs in zip(leader.weights + leader.biases, snap.weights + snap.biases):
        np.testing.assert_allclose(theirs, mine, rtol=0, atol=1e-12)


def test_a_regression_race_trains_on_past_its_diverging_members(rng):
    """--output identity --loss sse makes a regression race, trained as Race.learn trains it.
    A member that diverges (the classifier grid's lr-1 members do on these targets; the
    regression grid's stay finite) ranks last, as it would alone, and the race goes on
    without it: every batch trains."""
    X = rng.normal(size=(3000, 3))
    y = X @ [1.0, -2.0, 0.5] + 0.3 * np.sin(3 * X[:, 0]) + 0.1 * rng.normal(size=3000)
    with running_service("--layers", "3,1", "--race", "--output", "identity", "--loss", "sse",
                         "--seed", "2") as s, Control(s.control, timeout=RECV_TIMEOUT) as control:
        with Producer(s.ingest) as p:
            for i in range(0, 3000, 100):
                p.send(X[i:i + 100], y[i:i + 100])
        wait_for(control, 3000)
        snap, stats = control.snapshot(), control.stats()
    race = Race.grid(3, 1, output="identity", loss="sse", seed=2)
    race.learn(X, y)
    assert stats["rejected"] == {} and snap.member == race.leader
    leader = race.leader_net
    for mine, theirs in zip(leader.weights + leader.biases, snap.weights + snap.biases):
        np.testing.assert_array_equal(theirs, mine)
    wild = Race.grid(3, 1, output="identity", loss="sse", lrs=(0.05, 0.2, 1.0), hidden=(8, 32),
                     seed=2)
    alone = copy.deepcopy(wild)
    served = OneModel(wild, send=lambda topic, body: None)
    for i in range(0, 3000, 100):  # the same batches, so that the totals add up alike
        assert served.learn(X[i:i + 100], y[i:i + 100].reshape(-1, 1), None)[1] is None
        alone.learn(X[i:i + 100], y[i:i + 100])
    assert any(m.diverged() for m in alone.members) and not alone.diverged()
    assert_same_state(served.net.state(), alone.state())


def test_a_batch_that_leaves_the_leader_diverged_is_undone(rng):
    """The service's guard for a race is its leader, the member served."""
    race = Race.grid(3, 1, output="identity", loss="sse", seed=2)
    X = rng.normal(size=(50, 3))
    race.learn(X, X[:, 0])
    served = OneModel(race, send=lambda topic, body: None)
    before = race.state()
    Y = np.full((50, 1), 1e300)  # finite, and enough to blow up every member
    result, undone = served.learn(X, Y, None)
    assert result is None and undone.all() and not served.net.diverged()
    assert_same_state(served.net.state(), before)
