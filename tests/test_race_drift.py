"""A race watching its own errors for drift: against the detector run on its record, against
itself batched differently, and its re-seeded members against fresh networks."""

import copy

import numpy as np
import pytest

from streammlp import (MLP, DriftDetector, PageHinkley, Race, RaceFleet, model_seed, read,
                       reseed_seed)
from conftest import (CHANGE, assert_continue_alike, assert_same_state, batches,
                      changing_stream)

# Every race here is Race.grid(3, 1): the kernels the race tests compile anyway.
BOUND = 1_000  # rows after the change within which the drift must be reported


def detected(results) -> list[int]:
    """The versions where a detector run over the races' prequential records, batch after
    batch, finds drifts: what the race must report."""
    detector, found, seen = DriftDetector(), [], 0
    for r in results:
        found += (seen + 1 + detector.update(r.predicted, r.actual).rows).tolist()
        seen += r.n
    return found


def test_an_abrupt_change_is_reported_soon_after_and_summary_marks_it():
    X, y = changing_stream()
    race = Race.grid(3, 1, seed=0)
    results = [race.learn(X[rows], y[rows]) for rows in batches(len(X), sizes=(1, 700, 64, 3000))]
    expected = detected(results)
    assert expected and CHANGE < expected[0] <= CHANGE + BOUND, expected
    versions = [int(v) for r in results for v in r.drifts.seen]
    starts = np.cumsum([0] + [r.n for r in results[:-1]])
    assert versions == expected == [int(s + row + 1) for r, s in zip(results, starts)
                                    for row in r.drifts.rows]
    summary = race.summary()
    assert summary["drifts"] == len(expected) and summary["drift_versions"] == expected
    assert summary["reseeded"] == [[]] * len(expected)  # reseed=0: only reported
    whole = Race.grid(3, 1, seed=0)  # one call: the same drifts, at the same rows
    assert (whole.learn(X, y).drifts.seen + 0).tolist() == expected


def test_a_stationary_stream_raises_no_drift():
    # 100,000 rows of a fixed concept with 10 % label noise: the race's error rate settles
    # near 0.1; bench/drift.py measured no false alarm in 600 streams of 200,000 rows.
    X, y = changing_stream(100_000, seed=1, change=None)
    y = np.where(np.random.default_rng(2).random(len(y)) < 0.1, 1 - y, y)
    race = Race.grid(3, 1, seed=0)
    result = race.learn(X, y)
    assert len(result.drifts) == 0 and race.summary()["drifts"] == 0
    assert 0.85 < result.accuracy < 0.9  # it learned: the noise is all it gets wrong


def test_reseeded_members_are_fresh_networks_and_the_rest_is_untouched():
    X, y = changing_stream()
    version = Race.grid(3, 1, seed=0).learn(X, y).drifts.seen[0]
    plain = Race.grid(3, 1, seed=0)  # the race without a reaction, up to the drift
    plain.learn(X[:version], y[:version])
    race = Race.grid(3, 1, seed=0, reseed=3)
    for rows in batches(version, sizes=(300, 1, 7, 64)):
        race.learn(X[rows], y[rows])
    reseeded = race.summary()["reseeded"]
    # The three weakest by the ranking (accuracy, then loss), never the leader.
    order = sorted(set(range(len(plain.members))) - {plain.leader},
                   key=lambda k: (-plain.ew_accuracy[k], plain.ew_loss[k], k))
    assert race.summary()["drift_versions"] == [version] and reseeded == [sorted(order[-3:])]
    for k, (member, before) in enumerate(zip(race.members, plain.members)):
        if k in reseeded[0]:
            fresh = MLP(**{**member.spec(), "seed": reseed_seed(member.seed, version)})
            assert np.array_equal(member.params, fresh.params)
            assert not np.array_equal(member.params, before.params)
        else:
            assert np.array_equal(member.params, before.params)
        assert np.array_equal(member._scaler, before._scaler)  # input statistics kept
    assert race.leader == plain.leader and np.array_equal(race.ew_loss, plain.ew_loss)
    # Rows after the drift, in the batch that found it or later, train the fresh members.
    whole = Race.grid(3, 1, seed=0, reseed=3)
    result = whole.learn(X[:version + 2000], y[:version + 2000])
    race.learn(X[version:version + 2000], y[version:version + 2000])
    assert result.n == version + 2000 and result.drifts.rows.tolist() == [version - 1]
    assert result.drifts.reseeded == (tuple(reseeded[0]),)
    for a, b in zip(whole.members, race.members):
        assert np.array_equal(a.params, b.params)
    assert whole.samples == race.samples and whole.correct_total == race.correct_total


@pytest.mark.parametrize("reseed", [0, 3])
def test_state_round_trip_goes_on_detecting_exactly(reseed, tmp_path):
    """Saved before the change (the test's statistics mid-stream) and after a drift, a race
    read back, copied or rebuilt from its state detects and reacts as the original does."""
    X, y = changing_stream(3 * CHANGE // 2)
    race = Race.grid(3, 1, seed=0, reseed=reseed)
    race.learn(X[:CHANGE - 300], y[:CHANGE - 300])
    race.save(tmp_path / "race.npz")
    copies = [read(tmp_path / "race.npz")[0], copy.deepcopy(race), Race.from_state(race.state())]
    results = [r.learn(X[CHANGE - 300:], y[CHANGE - 300:]) for r in [race, *copies]]
    assert len(results[0].drifts) and race.summary()["drifts"] >= 1
    for other, result in zip(copies, results[1:]):
        assert other.summary() == race.summary()
        assert np.array_equal(result.drifts.seen, results[0].drifts.seen)
        for a, b in zip(race.members, other.members):
            assert np.array_equal(a.params, b.params)
    again = copy.deepcopy(race)  # drifts kept too
    assert again.summary() == race.summary() and again.spec() == race.spec()


def test_options_and_bad_settings():
    assert Race.grid(3, 1).spec()["drift"] == vars(PageHinkley())
    off = Race.grid(3, 1, drift=None)
    assert off.detector is None and "drifts" not in off.summary()
    regression = Race.grid(3, 1, output="identity", loss="sse", linear=())
    assert regression.detector is None  # no 0/1 error stream to watch
    with pytest.raises(ValueError, match="reseed=2 reacts to drifts, and drift=None"):
        Race.grid(3, 1, drift=None, reseed=2)
    with pytest.raises(ValueError, match="reseed=-1"):
        Race.grid(3, 1, reseed=-1)
    with pytest.raises(TypeError, match="expected a PageHinkley"):
        Race.grid(3, 1, drift={"delta": 0.1})


def test_a_race_fleet_reports_each_race_drifts_by_key():
    """Two keys interleaved, one changing concept: the fleet's drifts are each race's alone,
    named by slot and the race's own version, at the fleet row where they happened."""
    Xc, yc = changing_stream(seed=3)
    Xs, ys = changing_stream(seed=4, change=None)
    fleet = RaceFleet(lambda seed: Race.grid(3, 1, seed=seed, reseed=2), seed=1)
    keys = ["changes", "steady"] * 500
    found = []
    for start in range(0, len(Xc), 500):
        rows = slice(start, start + 500)
        X = np.stack([Xc[rows], Xs[rows]], axis=1).reshape(-1, 3)  # interleaved
        y = np.stack([yc[rows], ys[rows]], axis=1).ravel()
        result = fleet.learn(keys, X, y)
        d = result.drifts
        found += [(fleet.keys[s], v, r) for s, v, r in zip(d.slots, d.seen.tolist(), d.reseeded)]
        assert all(keys[row] == fleet.keys[s] for row, s in zip(d.rows, d.slots))
    alone = Race.grid(3, 1, seed=model_seed(1, "changes"), reseed=2)
    alone.learn(Xc, yc)
    summary = alone.summary()
    assert found and found == [("changes", v, tuple(r)) for v, r in
                               zip(summary["drift_versions"], summary["reseeded"])]
    mine = fleet.net("changes")
    assert {k: mine.summary()[k] for k in ("drifts", "drift_versions", "reseeded")} == \
        {k: summary[k] for k in ("drifts", "drift_versions", "reseeded")}
    for a, b in zip(mine.members, alone.members):  # the same bits, re-seeded members too
        assert np.array_equal(a.params, b.params)


def test_rewinding_undoes_a_batch_and_its_drifts():
    """What a service does with a batch it refuses: mark, learn, rewind. The race is then the
    one from before the batch, its drift test and record too (a mark rewinds more than once),
    and goes on as it would have."""
    X, y = changing_stream()
    race = Race.grid(3, 1, seed=0)
    race.learn(X[:CHANGE], y[:CHANGE])
    before = copy.deepcopy(race)
    mark = race.mark()
    for _ in range(2):
        assert len(race.learn(X[CHANGE:], y[CHANGE:]).drifts)  # the batch holds a drift
        race.rewind(mark)
        assert_same_state(race.state(), before.state())
    assert_continue_alike(race, before, X[CHANGE:], y[CHANGE:])

