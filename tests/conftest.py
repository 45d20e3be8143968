"""Shared test helpers."""

import copy

import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


# Numba compiles a kernel per (activation, output, loss, scaling, dtype, one hidden layer or
# more), ~10 s each on a cold cache. A test that needs "some network" of a kind takes the codes
# the rest of the suite compiles anyway: the seed's (MLP's and the service's defaults), or these
# for classes (the adapters' default for three or more).
SEED_CODES = dict(activation="logistic", output="logistic", loss="sse")
CLASSIFIER = dict(activation="tanh", output="softmax", loss="cross_entropy")


def seed_stream(n: int, seed: int = 0):
    """The seed's kind of data: 3-D points in [-1, 1], class 1 when the first coordinate >= 0."""
    r = np.random.default_rng(seed)
    X = r.uniform(-1, 1, (n, 3))
    return X, (X[:, 0] >= 0).astype(float)


CHANGE = 10_000  # the row where changing_stream's concept changes


def changing_stream(n: int = 2 * CHANGE, seed: int = 0, change: int | None = CHANGE):
    """3-D points, class 1 when x0 >= 0; from row ``change`` on, when x0 * x1 >= 0: a concept
    a race must relearn (half the rows change class), where it reports a drift (a flip of the
    labels it relearns too fast: its errors never add up to a detection)."""
    X = np.random.default_rng(seed).uniform(-1, 1, (n, 3))
    y = np.where(np.arange(n) < (n if change is None else change), X[:, 0] >= 0,
                 X[:, 0] * X[:, 1] >= 0)
    return X, y.astype(float)


def batches(n: int, sizes=(1, 7, 64, 300)):
    """Split ``range(n)`` into consecutive slices of cycling sizes."""
    start, i = 0, 0
    while start < n:
        yield slice(start, min(n, start + sizes[i % len(sizes)]))
        start += sizes[i % len(sizes)]
        i += 1


def windowed(values, window):
    """Means of ``values[:t]`` weighted ``(1 - 1/window)**age``, for every t: a batch recomputation."""
    decay = 1.0 - 1.0 / window
    out = np.full((len(values) + 1,) + values.shape[1:], np.nan)
    for t in range(1, len(values) + 1):
        w = decay ** np.arange(t - 1, -1, -1)
        out[t] = w @ values[:t] / w.sum()
    return out


def assert_members_learn_as_alone(race, X, y) -> None:
    """Every member of ``race``, learning ``X``/``y`` in the batches of :func:`batches`, gives
    each batch's figures and ends with the bits (parameters, scaler, totals) of a copy of it
    learning alone, ``MLP.learn`` on the same rows: the race's oracle."""
    alone = [copy.deepcopy(m) for m in race.members]
    for rows in batches(len(X)):
        result = race.learn(X[rows], y[rows])
        for k, net in enumerate(alone):
            own = net.learn(X[rows], y[rows])
            member = result.member(k)
            assert np.array_equal(member.sample_loss, own.sample_loss)
            assert np.array_equal(member.predicted, own.predicted)
            assert member.correct == own.correct and member.sse == pytest.approx(own.sse, rel=1e-12)
    for member, net in zip(race.members, alone):  # the same bits (1e-12 is the bar)
        assert np.array_equal(member.params, net.params)
        assert member.samples == net.samples == len(X)
        assert member.correct_total == net.correct_total
        assert np.array_equal(member._scaler, net._scaler) and member.scaler_count == net.scaler_count


def assert_continue_alike(race, loaded, X, y) -> None:
    """``loaded`` (a race read back from a save of ``race``) and a deep copy of ``race`` say
    what ``race`` says, then learn ``X``/``y`` to the same leaders, figures and bits."""
    twin = copy.deepcopy(race)
    assert loaded.summary() == race.summary() == twin.summary()
    results = [r.learn(X, y) for r in (race, loaded, twin)]
    for other, result in zip((loaded, twin), results[1:]):
        assert other.leader == race.leader and np.array_equal(other.ew_loss, race.ew_loss)
        assert np.array_equal(result.leaders, results[0].leaders)
        for a, b in zip(race.members, other.members):
            assert np.array_equal(a.params, b.params) and np.array_equal(a._scaler, b._scaler)


def assert_same_state(a, b, where: str = "state") -> None:
    """Two ``state()`` dicts (a network's, a race's) hold the same values, arrays bit for bit."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same_state(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_state(x, y, f"{where}[{i}]")
    elif isinstance(a, np.ndarray):
        assert np.array_equal(a, b, equal_nan=True), where
    else:
        assert a == b or (a != a and b != b), where


def assert_ranked(race, results, window: int, by: str):
    """A race's windowed figures and leaders after the batches of ``results`` against a batch
    recomputation: after every row t, the leader has the best figures of rows 0..t (on a tie it
    stays). Returns each row's member losses ``(n, members)``, the leaders before each row, and
    ``leading[t]``, the leader after t rows."""
    member_loss = np.concatenate([r.member_sample_loss for r in results], axis=1).T
    member_hit = np.concatenate([r.member_predicted == r.actual for r in results], axis=1).T
    leaders = np.concatenate([r.leaders for r in results])
    loss, accuracy = windowed(member_loss, window), windowed(member_hit.astype(float), window)
    np.testing.assert_allclose(race.ew_loss, loss[-1], rtol=1e-9)
    np.testing.assert_allclose(race.ew_accuracy, accuracy[-1], rtol=1e-9)
    leading = np.append(leaders, race.leader)
    key = loss if by == "loss" else np.stack([-accuracy, loss], axis=-1)
    for t in range(1, len(member_loss) + 1):
        best = min(range(key.shape[1]), key=lambda k: tuple(np.atleast_1d(key[t, k])))
        assert np.allclose(key[t, leading[t]], key[t, best], rtol=1e-9, atol=0), t
    return member_loss, leaders, leading


# -- a real service process on 127.0.0.1 with OS-assigned ports -----------------------------------

from service.process import ServiceProcess as running_service  # noqa: E402,F401
