"""The seed's 3-4-1 network, reproduced exactly, and learning what it should."""

import numpy as np

from streammlp import MLP, reference
from conftest import seed_stream


def test_seed_network_matches_seed_program_literally():
    net = MLP([3, 4, 1], lr=1.0, bias=False, seed=7)
    # Install the seed program's own initial weights (uniform in [-1, 1]) through the views.
    r = np.random.default_rng(99)
    w_itoh, w_htoo = r.uniform(-1, 1, (3, 4)), r.uniform(-1, 1, (4, 1))
    net.weights[0][...] = w_itoh
    net.weights[1][...] = w_htoo
    X, y = seed_stream(5000)
    net.learn(X[:1234], y[:1234])  # in two batches: order across calls is preserved too
    net.learn(X[1234:], y[1234:])
    reference.seed_learn(w_itoh, w_htoo, X, y, LR=1.0)
    np.testing.assert_allclose(net.weights[0], w_itoh, rtol=0, atol=1e-12)
    np.testing.assert_allclose(net.weights[1], w_htoo, rtol=0, atol=1e-12)
    assert not np.any(net.biases[0]) and not np.any(net.biases[1])
    assert net.samples == 5000


def test_seed_step_by_hand():
    """One sample through the seed's formulas written out unit by unit, no NumPy algebra."""
    import math

    net = MLP([3, 4, 1], lr=1.0, bias=False, seed=1)
    W1 = net.weights[0].tolist()
    W2 = [w[0] for w in net.weights[1].tolist()]
    x, T = [0.3, -0.2, 0.9], 1.0
    f = lambda s: 1 / (1 + math.exp(-s))  # noqa: E731
    S_preA_H = [sum(x[i] * W1[i][h] for i in range(3)) for h in range(4)]
    S_postA_H = [f(s) for s in S_preA_H]
    S_preA_O = sum(S_postA_H[h] * W2[h] for h in range(4))
    FE = f(S_preA_O) - T
    S_ERROR = FE * f(S_preA_O) * (1 - f(S_preA_O))
    new_W2 = [W2[h] - S_ERROR * S_postA_H[h] for h in range(4)]
    new_W1 = [[W1[i][h] - S_ERROR * W2[h] * S_postA_H[h] * (1 - S_postA_H[h]) * x[i]
               for h in range(4)] for i in range(3)]
    result = net.learn([x], [T])
    np.testing.assert_allclose(net.weights[1][:, 0], new_W2, rtol=0, atol=1e-15)
    np.testing.assert_allclose(net.weights[0], new_W1, rtol=0, atol=1e-15)
    assert result.sse == FE * FE and result.loss == 0.5 * FE * FE


def test_seed_network_learns_the_seed_task():
    net = MLP([3, 4, 1], lr=1.0, bias=False, seed=0)
    X, y = seed_stream(20000)
    result = net.learn(X, y)
    assert result.accuracy > 0.95  # prequential: each sample scored before it is learned
    Xv, yv = seed_stream(2000, seed=1)
    assert np.mean(net.predict_class(Xv) == yv) > 0.97


def test_one_hidden_layer_learns_xor():
    net = MLP([2, 4, 1], lr=0.5, seed=3)
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)
    y = np.array([0, 1, 1, 0], dtype=float)
    net.learn(np.tile(X, (5000, 1)), np.tile(y, 5000))
    assert net.predict_class(X).tolist() == [0, 1, 1, 0]
    assert np.all(np.abs(net.predict(X)[:, 0] - y) < 0.2)
