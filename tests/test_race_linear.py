"""A race of members of different depths: linear members (no hidden layer) beside hidden ones.

Each member must end exactly as ``MLP.learn`` on the same rows leaves it alone, whatever
the depths around it and however the members are shared out over threads; the ranking
must cover every member.
"""

import copy

import numpy as np
import pytest

import streammlp.race as race_module
from streammlp import MLP, Race, read
from streammlp.race import HIDDEN, LINEAR_LRS, LRS, REGRESSION_HIDDEN, REGRESSION_LINEAR_LRS
from conftest import (assert_continue_alike, assert_members_learn_as_alone, assert_ranked,
                      batches)


def mixed(dtype, scale, outputs=3):
    """Members of three depths, interleaved, with their own learning rates and seeds."""
    net = dict(output="softmax" if outputs > 1 else "logistic", loss="cross_entropy",
               init="glorot", dtype=dtype, scale=scale)
    return [MLP([5, outputs], lr=0.05, seed=0, **net),
            MLP([5, 8, outputs], lr=0.2, seed=1, **net),
            MLP([5, 6, 4, outputs], lr=0.3, seed=2, **net),
            MLP([5, outputs], lr=1.0, seed=3, **net),
            MLP([5, 16, outputs], lr=0.05, seed=4, **net)]


# Pairwise: each dtype, scaling on and off, serial and threaded (each pair compiles a race
# kernel and learners for three depths: a full product cost ~2 minutes more of compiling).
@pytest.mark.parametrize("dtype,scale,threads", [("float64", "standard", 3), ("float32", None, 1)])
def test_members_of_every_depth_learn_exactly_as_alone(dtype, scale, threads, rng, monkeypatch):
    monkeypatch.setattr(race_module, "PARALLEL_WORK", 1)  # share out every batch over the threads
    race = Race(mixed(dtype, scale), threads=threads)
    assert all(m.params.dtype == np.dtype(dtype) for m in race.members)
    X = rng.normal(size=(1500, 5)) * [1, 10, 0.1, 1, 100]
    assert_members_learn_as_alone(race, X, rng.integers(0, 3, 1500))


@pytest.mark.parametrize("by", ["loss", "accuracy"])
def test_every_member_of_every_depth_is_ranked(by, rng):
    window = 50
    race = Race(mixed("float64", "standard", outputs=1), window=window, by=by)
    X = rng.uniform(-1, 1, (900, 5))
    y = ((X[:, 0] + 0.5 * X[:, 1] + 0.3 * rng.normal(size=900)) >= 0).astype(int)
    results = [race.learn(X[rows], y[rows]) for rows in batches(len(X))]
    member_loss, leaders, leading = assert_ranked(race, results, window, by)
    race_loss = np.concatenate([r.sample_loss for r in results])
    assert np.array_equal(race_loss, member_loss[np.arange(len(X)), leaders])
    # Members of both depths led at some point: the ranking crosses depths.
    assert {len(race.members[k].layers) for k in set(leading.tolist())} >= {2, 3}


def test_the_default_grid_has_linear_members_and_ranks_classification_by_accuracy():
    race = Race.grid(6, 3, seed=0)
    # Widths 8 and 32 at lr 0.2 and 1, linear at 0.005 and 0.05 (bench/README.md, "A cheaper
    # classifier grid": what each bought on the quality suite).
    assert [(m.layers, m.lr) for m in race.members] == [
        ([6, 8, 3], 0.2), ([6, 8, 3], 1.0), ([6, 32, 3], 0.2), ([6, 32, 3], 1.0),
        ([6, 3], 0.005), ([6, 3], 0.05)]
    assert race.by == "accuracy" and all(m.scale == "standard" for m in race.members)
    regression = Race.grid(6, 1, output="identity", loss="sse", seed=0)
    assert regression.by == "loss" and regression.members[-1].layers == [6, 1]
    assert regression.members[-1].output == "identity"
    assert len(Race.grid(6, 3, linear=()).members) == len(HIDDEN) * len(LRS)
    assert Race.grid(6, 3, by="loss").by == "loss"
    only_linear = Race.grid(6, 2, hidden=(), linear=(0.1, 0.3))
    assert [m.layers for m in only_linear.members] == [[6, 2], [6, 2]]


def test_a_regression_race_has_its_own_grid_and_each_member_learns_as_alone(rng):
    """Identity outputs take the regression grid (two hidden members and a linear one, at lr
    0.02), unless a grid is given; each member learns exactly as MLP.learn alone would."""
    race = Race.grid(6, 1, output="identity", loss="sse", seed=0)
    assert [(m.layers, m.lr) for m in race.members] == [([6, 8, 1], 0.02), ([6, 16, 1], 0.02),
                                                          ([6, 1], 0.02)]
    assert len(race.members) == len(REGRESSION_HIDDEN) + len(REGRESSION_LINEAR_LRS)
    assert all((m.output, m.loss, m.scale, m.init) == ("identity", "sse", "standard", "glorot")
               for m in race.members)
    assert race.by == "loss" and race.detector is None
    given = Race.grid(6, 1, output="identity", loss="sse", lrs=LRS, hidden=HIDDEN,
                      linear=LINEAR_LRS)
    assert [(m.layers, m.lr) for m in given.members] == [
        (m.layers[:-1] + [1], m.lr) for m in Race.grid(6, 3).members]  # the classifier grid's
    X = rng.normal(size=(1500, 6)) * [1, 10, 0.1, 1, 100, 3]
    y = 50 + X @ [3.0, -0.2, 20.0, 1.0, 0.01, 0.0] + np.sin(X[:, 0]) + rng.normal(size=1500)
    assert_members_learn_as_alone(race, X, y)


def linear_stream(n, d, seed):
    """A noisy linear concept on ``d`` features: where a linear member should lead."""
    r = np.random.default_rng(seed)
    w = r.normal(size=d)
    X = r.normal(size=(n, d))
    return X, (X @ w + r.normal(size=n) >= 0).astype(int)


def test_a_linear_member_leads_the_default_race_on_a_noisy_linear_concept():
    X, y = linear_stream(20_000, 20, 4)
    race = Race.grid(20, 1, seed=0)
    result = race.learn(X, y)
    assert race.leader_net.layers == [20, 1]
    assert np.mean([len(race.members[k].layers) == 2 for k in result.leaders[10_000:]]) > 0.9
    # The race serves its leader, linear or not.
    assert np.array_equal(race.predict(X[:20]), race.leader_net.predict(X[:20]))
    assert race.weights[0].shape == (20, 1) and len(race.weights) == 1


def test_a_mixed_race_saves_reads_and_copies_and_goes_on_identically(tmp_path, rng):
    race = Race.grid(3, 3, lrs=(0.1, 1.0), hidden=(4, (5, 3)), linear=(0.01, 0.05), seed=3,
                     window=100)
    X, y = rng.uniform(-1, 1, (800, 3)) * [1, 1e3, 1], rng.integers(0, 3, 800)
    race.learn(X[:300], y[:300])
    race.save(tmp_path / "race.npz")
    loaded = read(tmp_path / "race.npz")[0]
    assert Race.load(tmp_path / "race.npz").spec() == race.spec() == loaded.spec()
    assert [m.layers for m in loaded.members] == [[3, 4, 3]] * 2 + [[3, 5, 3, 3]] * 2 + [[3, 3]] * 2
    assert_continue_alike(race, loaded, X[300:], y[300:])


def test_a_choice_of_threads_survives_copies_and_checkpoints(tmp_path):
    """An explicit ``threads`` is part of the race's state; the default stays per machine."""
    threads = race_module.THREADS + 1  # not this machine's default
    chosen = Race.grid(3, 1, hidden=(4,), threads=threads, seed=0)
    assert copy.deepcopy(chosen).threads == threads
    chosen.save(tmp_path / "race.npz")
    assert Race.load(tmp_path / "race.npz").threads == threads
    assert copy.deepcopy(Race.grid(3, 1, hidden=(4,), seed=0)).threads == race_module.THREADS
