"""Online input scaling (``MLP(..., scale="standard")``) against a batch recomputation."""

import copy

import numpy as np
import pytest

from streammlp import MLP, Race, read, reference
from streammlp.network import SCALE_LIMIT, InputError
from conftest import CLASSIFIER


def awkward_inputs(n, rng):
    """Features on very different scales and offsets, a constant one, and one constant at first."""
    X = rng.uniform(-1, 1, (n, 5)) * [1.0, 1e3, 1e-3, 0.0, 1.0] + [0.0, 5e3, -2e-3, 2.0, 0.0]
    X[: n // 4, 4] = 0.5  # zero variance for a while, then not
    return X


# Inputs are standardised before any code matters, so each kernel (one hidden layer, or the
# loop over layers) takes one set of codes, not both: the seed's, and conftest.CLASSIFIER's.
@pytest.mark.parametrize("activation,output,loss,hidden", [
    ("logistic", "logistic", "sse", [6]), ("tanh", "softmax", "cross_entropy", [6, 4])])
def test_scaled_stream_matches_reference_on_preceding_statistics(activation, output, loss, hidden, rng):
    net = MLP([5, *hidden, 2], activation=activation, output=output, loss=loss, lr=0.2, seed=2,
              scale="standard")
    weights = [w.copy() for w in net.weights]
    biases = [b.copy() for b in net.biases]
    X = awkward_inputs(400, rng)
    Y = np.eye(2)[rng.integers(0, 2, 400)]
    # In two batches: the statistics carry over from one call to the next.
    first, second = net.learn(X[:150], Y[:150]), net.learn(X[150:], Y[150:])
    expected_loss = reference.learn(weights, biases, reference.standardise_prequential(X), Y, 0.2,
                                    activation, output, loss)
    for got, want in zip(net.weights + net.biases, weights + biases):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    sample_loss = np.concatenate([first.sample_loss, second.sample_loss])
    np.testing.assert_allclose(sample_loss, expected_loss, rtol=1e-10, atol=1e-12)
    assert net.scaler_count == 400
    np.testing.assert_allclose(net.scaler_mean, X.mean(axis=0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(net.scaler_var, X.var(axis=0), rtol=1e-9, atol=1e-15)


def test_a_zero_variance_feature_is_zero_so_its_weights_never_move(rng):
    net = MLP([5, 4, 1], lr=0.5, seed=0, scale="standard")
    before = net.weights[0].copy()
    X = awkward_inputs(200, rng)
    net.learn(X, rng.uniform(0, 1, 200))
    assert np.array_equal(net.weights[0][3], before[3])  # the constant feature
    assert not np.array_equal(net.weights[0][4], before[4])  # constant only for a while
    assert net.scaler_var[3] == 0.0


def test_float32_scaled_agrees_with_float64(rng):
    X = awkward_inputs(2000, rng)
    y = (X[:, 0] >= 0).astype(float)
    a = MLP([5, 8, 1], lr=0.5, seed=5, scale="standard")
    b = MLP([5, 8, 1], lr=0.5, seed=5, scale="standard", dtype="float32")
    ra, rb = a.learn(X, y), b.learn(X, y)
    np.testing.assert_allclose(b.params, a.params, rtol=0, atol=1e-3)
    assert abs(ra.correct - rb.correct) <= 5
    assert b.scaler_mean.dtype == np.float64  # the statistics stay float64


def test_features_a_hundred_million_times_apart_are_learned_with_scaling_only(rng):
    """Class 1 when the 1e-3-scale feature is positive; beside it, a 1e5-scale feature."""
    n = 20_000
    u = rng.uniform(-1, 1, (n, 2))
    X = np.column_stack([1e-3 * u[:, 0], 1e5 * (3.0 + u[:, 1])])
    y = (u[:, 0] >= 0).astype(float)
    plain = MLP([2, 8, 1], lr=1.0, seed=0).learn(X, y)
    scaled = MLP([2, 8, 1], lr=1.0, seed=0, scale="standard").learn(X, y)
    late = slice(n // 2, None)  # prequential accuracy over the second half
    assert np.mean(scaled.predicted[late] == scaled.actual[late]) > 0.95
    assert np.mean(plain.predicted[late] == plain.actual[late]) < 0.6


def test_predict_applies_the_scaler_without_updating_it(rng):
    net = MLP([5, 6, 3], **CLASSIFIER, lr=0.2, seed=1, scale="standard")
    X = awkward_inputs(300, rng)
    net.learn(X, rng.integers(0, 3, 300))
    state = copy.deepcopy(net.state())
    Z = awkward_inputs(20, rng)
    var = X.var(axis=0)
    scaled = np.where(var > 0, (Z - X.mean(axis=0)) / np.sqrt(np.where(var > 0, var, 1.0)), 0.0)
    want = np.array([reference.forward(net.weights, net.biases, z, "tanh", "softmax")[1][-1]
                     for z in scaled])
    np.testing.assert_allclose(net.predict(Z), want, rtol=0, atol=1e-12)
    assert np.array_equal(net.predict_class(Z), want.argmax(axis=1))
    assert net.scaler_count == state["scaler_count"]
    assert np.array_equal(net._scaler, state["scaler"])


def test_save_load_keeps_the_scaler_and_continues_identically(tmp_path, rng):
    net = MLP([5, 4, 1], lr=0.3, seed=3, scale="standard", dtype="float32")
    X, y = awkward_inputs(600, rng), rng.uniform(0, 1, 600)
    net.learn(X[:250], y[:250])
    net.save(tmp_path / "net.npz", extra={"note": "scaled"})
    loaded, extra = read(tmp_path / "net.npz")
    assert extra == {"note": "scaled"} and loaded.spec() == net.spec()
    assert loaded.scaler_count == 250
    assert np.array_equal(loaded.scaler_mean, net.scaler_mean)
    assert np.array_equal(loaded.scaler_var, net.scaler_var)
    twin = copy.deepcopy(net)
    ra, rb, rc = net.learn(X[250:], y[250:]), loaded.learn(X[250:], y[250:]), twin.learn(X[250:], y[250:])
    assert np.array_equal(loaded.params, net.params) and np.array_equal(twin.params, net.params)
    assert np.array_equal(ra.sample_loss, rb.sample_loss) and np.array_equal(ra.sample_loss, rc.sample_loss)


def test_an_input_whose_variance_would_overflow_is_refused_before_any_update(rng):
    """Welford's sum of squared deviations overflows for |x| around 1e154: such rows are refused,
    and inputs up to the limit keep the statistics finite."""
    net = MLP([3, 4, 1], lr=0.5, seed=0, scale="standard")
    X = rng.uniform(-1, 1, (300, 3)) * [1.0, SCALE_LIMIT, 1.0]  # the largest inputs taken
    net.learn(X[:200], X[:200, 0] >= 0)
    assert np.isfinite(net._scaler).all() and np.all(net.scaler_var > 0)
    before = net.params.copy(), net._scaler.copy(), net.scaler_count, net.samples
    bad = X[200:].copy()
    bad[7, 1] = 1e160
    with pytest.raises(InputError, match="X has 1e\\+160 in row 7, column 1; with scale='standard'") as e:
        net.learn(bad, bad[:, 0] >= 0)
    assert e.value.reason == "out_of_range"
    assert np.array_equal(net.params, before[0]) and np.array_equal(net._scaler, before[1])
    assert (net.scaler_count, net.samples) == before[2:]
    race = Race.grid(3, 1, hidden=(4,), seed=0)
    with pytest.raises(InputError, match="out_of_range|within"):
        race.learn(bad, bad[:, 0] >= 0)
    assert MLP([3, 4, 1]).learn(bad, bad[:, 0] >= 0).n == 100  # without scaling, nothing to overflow


def test_without_scale_nothing_changes():
    net = MLP([3, 4, 1], seed=0)
    assert net.scale is None and net.scaler_mean is None and net.scaler_var is None
    assert "scaler" not in net.state() and net.spec()["scale"] is None
    assert repr(net).endswith("dtype='float64')")


def test_an_unknown_scale_is_explained():
    with pytest.raises(ValueError, match="scale='minmax'; expected one of None, 'standard'"):
        MLP([3, 4, 1], scale="minmax")


def test_a_scaler_that_does_not_fit_is_refused():
    state = MLP([3, 4, 1], scale="standard").state()
    state["scaler"] = np.zeros((2, 4))
    with pytest.raises(ValueError, match=r"scaler of shape \(2, 4\) does not fit"):
        MLP.from_state(state)
