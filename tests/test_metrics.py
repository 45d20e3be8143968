"""Streaming metrics against a direct recomputation after every batch."""

import numpy as np
import pytest

from streammlp import MLP, StreamMetrics
from streammlp.network import Prequential


def batch(loss, predicted, actual) -> Prequential:
    loss, predicted, actual = map(np.asarray, (loss, predicted, actual))
    return Prequential(n=len(loss), sse=0.0, loss=float(loss.sum()),
                       correct=int(np.sum(predicted == actual)), sample_loss=loss,
                       predicted=predicted, actual=actual)


@pytest.mark.parametrize("window", [1, 7, 100])
def test_figures_agree_with_direct_computation_after_every_batch(window, rng):
    m = StreamMetrics(classes=3, window=window, alpha=0.1)
    losses, predicted, actual = [], [], []
    for size in [1, 3, 5, 50, 2, 130, 1, 9]:
        b = batch(rng.uniform(0, 2, size), rng.integers(0, 3, size), rng.integers(0, 3, size))
        m.update(b)
        losses += b.sample_loss.tolist()
        predicted += b.predicted.tolist()
        actual += b.actual.tolist()
        L, P, A = np.array(losses), np.array(predicted), np.array(actual)
        assert m.samples == len(L)
        assert m.loss == pytest.approx(L.mean(), rel=1e-12)
        assert m.accuracy == pytest.approx(np.mean(P == A), rel=1e-12)
        assert m.rolling_loss == pytest.approx(L[-window:].mean(), rel=1e-12)
        assert m.rolling_accuracy == pytest.approx(np.mean(P[-window:] == A[-window:]), rel=1e-12)
        ew = L[0]
        for value in L:
            ew = 0.9 * ew + 0.1 * value
        assert m.ew_loss == pytest.approx(ew, rel=1e-10)
        direct = np.zeros((3, 3), dtype=int)
        for a, p in zip(A, P):
            direct[a, p] += 1
        assert np.array_equal(m.confusion, direct)


def test_empty_metrics_are_nan_not_errors():
    m = StreamMetrics(classes=2)
    assert np.isnan(m.loss) and np.isnan(m.rolling_accuracy)
    assert m.summary()["samples"] == 0


def test_metrics_of_a_real_stream_match_learn_results(rng):
    net = MLP([3, 4, 1], lr=1.0, seed=0)
    m = StreamMetrics(classes=2, window=500)
    for _ in range(4):
        X = rng.uniform(-1, 1, (300, 3))
        r = net.learn(X, (X[:, 0] >= 0).astype(float))
        m.update(r)
    assert m.samples == net.samples
    assert m.loss == pytest.approx(net.loss_total / net.samples)
    assert m.accuracy == net.correct_total / net.samples
