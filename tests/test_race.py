"""Race: each member against the same network trained alone; the leader against a recomputation."""

import copy
import json

import numpy as np
import pytest

import streammlp.race as race_module
from streammlp import MLP, Race, RaceFleet, model_seed, read
from conftest import (CLASSIFIER, assert_continue_alike, assert_members_learn_as_alone,
                      assert_ranked, assert_same_state, batches)


# Not the full product of scaling, dtype and depth: each combination compiles a race kernel and
# a network kernel (~10 s each, cold), and in the race kernel dtype and depth are types, scaling
# one branch (the shared standardised rows or a member's own statistics: the own-history test
# below takes both). The two one-hidden-layer float64 races are the threads test's kernels; the
# third takes float32, two hidden layers and scaling together.
ONE_HIDDEN, TWO_HIDDEN = (8, 32), ((6, 4), (3, 9))


@pytest.mark.parametrize("scale,dtype,hidden", [
    ("standard", "float64", ONE_HIDDEN),
    (None, "float64", ONE_HIDDEN),
    ("standard", "float32", TWO_HIDDEN),
], ids=["standard-float64-1", "None-float64-1", "standard-float32-2"])
def test_each_member_learns_exactly_as_it_would_alone(scale, dtype, hidden, rng):
    race = Race.grid(5, 3, hidden=hidden, scale=scale, dtype=dtype, seed=7, **CLASSIFIER)
    assert len(race.members) == 6  # 4 with a hidden layer, 2 linear: two depths, each exact
    X = rng.normal(size=(1500, 5)) * [1, 10, 0.1, 1, 100]
    assert_members_learn_as_alone(race, X, rng.integers(0, 3, 1500))


@pytest.mark.parametrize("scale", [None, "standard"])
def test_threads_give_the_serial_race_bit_for_bit(scale, rng, monkeypatch):
    """Members trained in parallel threads (groups of about equal work) end with the bits of the
    serial race, batch after batch, including batches too small to share out."""
    monkeypatch.setattr(race_module, "PARALLEL_WORK", 1)  # share out every batch here
    X = rng.normal(size=(2000, 5)) * [1, 10, 0.1, 1, 100]
    y = rng.integers(0, 3, 2000)
    grid = dict(lrs=(0.05, 0.2, 1.0), hidden=ONE_HIDDEN, scale=scale, seed=7, **CLASSIFIER)
    serial = Race.grid(5, 3, **grid, threads=1)
    parallel = Race.grid(5, 3, **grid, threads=3)
    assert serial.threads == 1 and len(parallel._groups) == 3
    assert sorted(np.concatenate(parallel._groups).tolist()) == list(range(len(parallel.members)))
    for rows in batches(len(X), sizes=(1, 300, 7, 900)):
        a, b = serial.learn(X[rows], y[rows]), parallel.learn(X[rows], y[rows])
        assert np.array_equal(a.member_sample_loss, b.member_sample_loss)
        assert np.array_equal(a.leaders, b.leaders) and np.array_equal(a.actual, b.actual)
        assert a.loss == b.loss and np.array_equal(a.member_sse, b.member_sse)
    for m, n in zip(serial.members, parallel.members):
        assert np.array_equal(m.params, n.params) and np.array_equal(m._scaler, n._scaler)
    assert Race.grid(3, 1).threads == race_module.THREADS >= 1
    with pytest.raises(ValueError, match="threads=0"):
        Race.grid(3, 1, threads=0)


def test_members_with_their_own_history_still_learn_as_alone(rng):
    """A member whose scaler has seen other rows standardises with its own statistics."""
    X, y = rng.normal(size=(600, 4)) * [1, 5, 50, 0.5], rng.integers(0, 3, 600)
    fresh = MLP([4, 6, 3], **CLASSIFIER, lr=0.2, seed=0, scale="standard")
    seasoned = MLP([4, 9, 3], **CLASSIFIER, lr=1.0, seed=1, scale="standard")
    seasoned.learn(X[:100] * 2.0, y[:100])
    briefly = MLP([4, 5, 3], **CLASSIFIER, lr=0.5, seed=2, scale="standard")
    briefly.learn(X[:3], y[:3])
    # Twins have the statistics of `fresh` (then they share its standardised rows) or of
    # `seasoned` (then they share nothing with member 0). Six members, as in the other races
    # here: the race's kernel is compiled for a number of members.
    race = Race([fresh, seasoned, copy.deepcopy(fresh), briefly, copy.deepcopy(seasoned),
                 MLP([4, 7, 3], **CLASSIFIER, lr=0.1, seed=3, scale="standard")])
    alone = [copy.deepcopy(m) for m in race.members]
    for rows in batches(500):
        race.learn(X[100:][rows], y[100:][rows])
        for net in alone:
            net.learn(X[100:][rows], y[100:][rows])
    for member, net in zip(race.members, alone):
        assert np.array_equal(member.params, net.params)
        assert np.array_equal(member._scaler, net._scaler) and member.scaler_count == net.scaler_count


@pytest.mark.parametrize("by", ["loss", "accuracy"])
def test_the_leader_is_the_member_with_the_best_windowed_figure(by, rng):
    window = 50
    race = Race.grid(4, 1, lrs=(0.01, 0.3, 3.0), hidden=(2, 8), window=window, by=by, seed=1)
    X = rng.uniform(-1, 1, (900, 4))
    y = ((X[:, 0] + 0.3 * rng.normal(size=900)) >= 0).astype(int)
    results = [race.learn(X[rows], y[rows]) for rows in batches(len(X))]
    _, leaders, _ = assert_ranked(race, results, window, by)
    assert len(set(leaders.tolist())) > 1  # the test sees the leader move


def test_the_race_scores_each_row_with_the_leader_before_it(rng):
    race = Race.grid(3, 2, lrs=(0.1, 0.3, 1.0), hidden=(4, 16), seed=2, **CLASSIFIER)
    X, y = rng.uniform(-1, 1, (2000, 3)), rng.integers(0, 2, 2000)
    result = race.learn(X, y)
    rows = np.arange(len(X))
    assert np.array_equal(result.sample_loss, result.member_sample_loss[result.leaders, rows])
    assert np.array_equal(result.predicted, result.member_predicted[result.leaders, rows])
    assert result.correct == np.count_nonzero(result.predicted == y)
    assert result.loss == pytest.approx(result.sample_loss.sum(), rel=1e-12)
    assert result.leaders[0] == 0 and result.leader == race.leader
    assert (race.samples, race.correct_total) == (2000, result.correct)
    assert np.array_equal(race.predict(X[:50]), race.leader_net.predict(X[:50]))
    assert np.array_equal(race.predict_class(X[:50]), race.leader_net.predict_class(X[:50]))


def rotating_after_noise(n, seed):
    """``n`` samples of a fixed boundary with 20 % label noise, then ``n`` of a boundary that
    turns once every 2,000 samples: the first half rewards a small learning rate, the second a large one."""
    r = np.random.default_rng(seed)
    X = r.uniform(-1, 1, (2 * n, 2))
    t = np.arange(2 * n)
    angle = np.where(t < n, 0.0, 2 * np.pi * (t - n) / 2000)
    y = (X[:, 0] * np.cos(angle) + X[:, 1] * np.sin(angle) >= 0).astype(int)
    return X, y ^ ((t < n) & (r.uniform(size=2 * n) < 0.2))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_leader_changes_when_the_best_learning_rate_does(seed):
    X, y = rotating_after_noise(10_000, seed)
    # Three widths of each learning rate: six members, as the race kernel the other tests compile.
    race = Race.grid(2, 1, lrs=(0.05, 1.0), hidden=(8, 12, 16), linear=(), window=500, seed=seed)
    lr = np.array([m.lr for m in race.members])
    calm = race.learn(X[:10_000], y[:10_000])
    assert lr[race.leader] == 0.05 and np.mean(lr[calm.leaders[5000:]] == 0.05) > 0.9
    turning = race.learn(X[10_000:], y[10_000:])
    assert lr[race.leader] == 1.0 and np.mean(lr[turning.leaders[5000:]] == 1.0) > 0.9


def test_save_read_and_deepcopy_continue_identically(tmp_path, rng):
    race = Race.grid(3, 3, lrs=(0.1, 0.3, 1.0), hidden=(4, 6), seed=3, window=100, by="accuracy",
                     **CLASSIFIER)
    X, y = rng.uniform(-1, 1, (800, 3)) * [1, 1e3, 1], rng.integers(0, 3, 800)
    race.learn(X[:300], y[:300])
    race.save(tmp_path / "race.npz", extra={"rejected": {"shape": 2}})
    loaded, extra = read(tmp_path / "race.npz")
    assert isinstance(loaded, Race) and extra == {"rejected": {"shape": 2}}
    assert Race.load(tmp_path / "race.npz").spec() == race.spec() == loaded.spec()
    assert_continue_alike(race, loaded, X[300:], y[300:])
    MLP([3, 4, 1]).save(tmp_path / "net.npz")
    with pytest.raises(ValueError, match="not a race"):
        Race.load(tmp_path / "net.npz")
    with pytest.raises(ValueError, match="holds a Race"):
        MLP.load(tmp_path / "race.npz")


def test_summary_is_plain_json(rng):
    race = Race.grid(3, 1, seed=0)
    assert np.isnan(race.summary()["members"][0]["ew_loss"])  # nothing seen yet
    race.learn(rng.uniform(-1, 1, (100, 3)), rng.integers(0, 2, 100))
    summary = json.loads(json.dumps(race.summary()))
    assert summary["leader"] == race.leader and summary["samples"] == 100
    assert [m["lr"] for m in summary["members"]] == [0.2, 1.0] * 2 + [0.005, 0.05]
    assert [m["layers"] for m in summary["members"]] == ([[3, 8, 1]] * 2 + [[3, 32, 1]] * 2
                                                          + [[3, 1]] * 2)
    assert set(summary["members"][0]) == {"member", "layers", "lr", "ew_loss", "ew_accuracy",
                                          "loss", "accuracy"}


def test_bad_input_raises_before_any_update(rng):
    race = Race.grid(3, 2, lrs=(0.1, 0.3, 1.0), hidden=(4, 8), seed=0, **CLASSIFIER)
    race.learn(rng.uniform(-1, 1, (5, 3)), rng.integers(0, 2, 5))
    before = [m.params.copy() for m in race.members], race.samples
    with pytest.raises(ValueError, match="X has 4 columns; this network takes 3"):
        race.learn(np.zeros((2, 4)), np.zeros(2, dtype=int))
    with pytest.raises(ValueError, match="label 2 at row 1 is out of range"):
        race.learn(np.zeros((2, 3)), np.array([0, 2]))
    assert all(np.array_equal(m.params, p) for m, p in zip(race.members, before[0]))
    assert race.samples == before[1]


@pytest.mark.parametrize("members,kwargs,message", [
    ([], {}, "non-empty sequence of MLP"),
    ([MLP([3, 4, 1]), MLP([2, 4, 1])], {}, "member 1 has n_inputs=2 and member 0 3"),
    ([MLP([3, 4, 1]), MLP([3, 4, 1], activation="tanh")], {}, "activation='tanh'"),
    ([MLP([3, 4, 1]), MLP([3, 4, 1], scale="standard")], {}, "scale='standard'"),
    ([MLP([3, 4, 1])], {"window": 0}, "window=0"),
    ([MLP([3, 4, 1])], {"by": "speed"}, "by='speed'"),
])
def test_bad_races_are_explained(members, kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        Race(members, **kwargs)
    net = MLP([3, 4, 1])
    with pytest.raises(ValueError, match="member 1 appears twice"):
        Race([net, net])


def test_a_race_per_key_trains_on_past_its_diverging_members():
    """Keyed races (RaceFleet) keep a batch in which a member diverges while another leads, as
    the race alone would: each key's race ends as Race.learn of that key's rows."""
    def make(seed):  # the classifier grid's hidden members, whose lr-1 ones diverge here
        return Race.grid(3, 1, output="identity", loss="sse", lrs=(0.05, 0.2, 1.0),
                         hidden=(8, 32), seed=seed)

    rng = np.random.default_rng(1)  # rows on which member 5 (3-32-1, lr 1) of both keys diverges
    X = rng.normal(size=(300, 3))
    y = X @ [1.0, -2.0, 0.5] + 0.1 * rng.normal(size=300)
    fleet = RaceFleet(make, seed=7)
    slots = np.array([fleet.slot(k) for k in ("a", "b")] * 300, dtype=np.int64)  # interleaved
    rows, targets = np.repeat(X, 2, axis=0), np.repeat(y, 2).reshape(-1, 1)
    for start in range(0, 600, 150):
        part = slice(start, start + 150)
        assert fleet.learn_checked(rows[part], targets[part], slots[part]).undone is None
    for key in ("a", "b"):
        alone = make(model_seed(7, key))
        alone.learn(X, y)
        served = fleet.net(key)
        assert alone.members[5].diverged() and served.leader == alone.leader
        for mine, theirs in zip(alone.members, served.members):
            assert np.array_equal(mine.params, theirs.params, equal_nan=True)


def test_a_diverged_member_ranks_last_by_accuracy_too():
    """With NaN weights a member predicts class 0 on every row: on a stream of mostly 0s that
    is more accurate than an honest member, and it must still not lead."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(4000, 3)), (rng.random(4000) < 0.3).astype(int)

    def member():
        return MLP([3, 8, 1], output="logistic", loss="cross_entropy", lr=1.0, seed=1,
                   scale="standard", init="glorot")

    race = Race([member(), member()], by="accuracy", threads=1, drift=None)
    race.learn(X[:1000], y[:1000])
    race.members[0].params[:] = np.nan  # as if it had diverged while member 1 led
    race.leader = 1
    race.learn(X[1000:], y[1000:])
    assert race.ew_accuracy[0] > race.ew_accuracy[1]  # the trap: more accurate, and NaN
    assert race.leader == 1 and not race.diverged()


def test_a_race_per_key_that_diverges_is_rewound_and_the_others_train():
    """RaceFleet undoes a key's batch that leaves its leader diverged, whole, in place; another
    key's rows of the same call are kept."""
    fleet = RaceFleet(lambda seed: Race.grid(3, 1, output="identity", loss="sse", seed=seed),
                      seed=3)
    X = np.random.default_rng(2).normal(size=(40, 3))
    slots = np.array([fleet.slot(k) for k in ("calm", "wild")] * 20, dtype=np.int64)
    fleet.learn_checked(X, X[:, :1], slots)
    calm, wild = (copy.deepcopy(fleet.net(k)) for k in ("calm", "wild"))
    Y = np.where(slots[:, None] == 1, 1e300, X[:, :1])  # finite, and blows up every member
    result = fleet.learn_checked(X, Y, slots)
    assert np.array_equal(result.undone, slots == 1)
    assert fleet.net("wild") is fleet.races[1] and not fleet.net("wild").diverged()
    assert_same_state(fleet.net("wild").state(), wild.state())
    calm.learn(X[slots == 0], X[slots == 0, :1])
    assert_same_state(fleet.net("calm").state(), calm.state())
