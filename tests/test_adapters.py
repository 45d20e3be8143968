"""The adapters against MLP itself: the same rows, the same seed, the same weights.

Every scikit-learn or River call must be ``MLP.learn`` on the same rows, one
step per row in order; each test trains both and compares the parameters.
Tests of a library that is not installed are skipped.
"""

import importlib.util
import pathlib
import subprocess
import sys
import warnings

import numpy as np
import pytest

from streammlp import MLP, adapters

ROOT = pathlib.Path(__file__).resolve().parent.parent
# What check_estimator may skip, and why; any other check that does not pass fails the test.
SKLEARN_SKIPPED = {
    "check_array_api_input": "MLP computes in NumPy only; scikit-learn runs this check only "
                             "with SCIPY_ARRAY_API=1 and an array library installed",
}


def stream(n, inputs, classes, seed=0):
    """``n`` rows uniform in [-1, 1] and labels drawn from ``classes``, depending on the rows."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, (n, inputs))
    index = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5).astype(int) * (len(classes) > 2)
    return X, np.asarray(classes)[index % len(classes)]


def close(a, b):
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


def test_importing_the_adapters_imports_neither_library():
    code = ("import sys, streammlp.adapters as a; "
            "assert 'sklearn' not in sys.modules and 'river' not in sys.modules; "
            "print(sorted(a.__all__))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "OnlineMLPClassifier" in out.stdout


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        adapters.Nope  # noqa: B018


# -- scikit-learn ---------------------------------------------------------------------------

@pytest.fixture
def sklearn():
    return pytest.importorskip("sklearn", minversion="1.6")


# The activations make kernels other tests compile: the seed's codes, conftest.CLASSIFIER's.
@pytest.mark.parametrize("classes,loss,dtype,activation", [
    ([0, 1], "sse", "float64", "logistic"),                   # one logistic output
    (["b", "a", "c"], "sse", "float64", "logistic"),          # three logistic outputs
    ([10, -3, 7], "cross_entropy", "float64", "tanh"),        # softmax, non-contiguous int labels
    (["no", "yes"], "sse", "float32", "logistic"),
])
def test_partial_fit_is_mlp_learn_on_the_same_rows(sklearn, classes, loss, dtype, activation):
    X, y = stream(300, 4, classes)
    model = adapters.OnlineMLPClassifier(hidden=(5,), activation=activation, init="uniform",
                                         loss=loss, lr=0.5, random_state=3, dtype=dtype)
    losses = []
    for start, stop in [(0, 1), (1, 50), (50, 51), (51, 300)]:  # any split: one step per row
        model.partial_fit(X[start:stop], y[start:stop], classes=classes if start == 0 else None)
        losses.append(model.prequential_.sample_loss)

    order = sorted(classes)  # classes_ is sorted; output j is classes_[j]
    labels = np.array([order.index(v) for v in y])
    k = len(classes)
    output = "softmax" if loss == "cross_entropy" and k > 2 else "logistic"
    net = MLP([4, 5, 1 if k == 2 else k], activation=activation, output=output, loss=loss,
              lr=0.5, seed=3, dtype=dtype)
    result = net.learn(X, labels.astype(float) if k == 2 else labels)

    assert model.classes_.tolist() == order
    close(model.net_.params, net.params)
    close(np.concatenate(losses), result.sample_loss)
    assert (model.predict(X) == np.array(order)[net.predict_class(X)]).all()


def test_fit_is_a_fresh_network_and_epochs_passes(sklearn):
    X, y = stream(200, 3, [0, 1])
    model = adapters.OnlineMLPClassifier(hidden=(4,), epochs=3, random_state=1).fit(X, y)
    again = adapters.OnlineMLPClassifier(hidden=(4,), epochs=3, random_state=1).fit(X[:50], y[:50])
    again.fit(X, y)  # fit starts over: what came before is gone
    net = MLP([3, 4, 1], activation="tanh", loss="cross_entropy", init="glorot", seed=1)
    for _ in range(3):
        net.learn(X, y.astype(float))
    close(model.net_.params, net.params)
    close(again.net_.params, net.params)


@pytest.mark.parametrize("shape", [(300,), (300, 2)])
def test_regressor_partial_fit_is_mlp_learn(sklearn, shape):
    rng = np.random.default_rng(2)
    X = rng.uniform(-1, 1, (300, 3))
    y = rng.uniform(-1, 1, shape)
    model = adapters.OnlineMLPRegressor(hidden=(6,), random_state=0)
    model.partial_fit(X[:120], y[:120]).partial_fit(X[120:], y[120:])
    k = 1 if len(shape) == 1 else shape[1]
    net = MLP([3, 6, k], activation="tanh", output="identity", lr=0.01, init="glorot", seed=0)
    net.learn(X, y)
    close(model.net_.params, net.params)
    assert model.predict(X[:7]).shape == (7,) + shape[1:]
    close(model.predict(X[:7]).reshape(7, -1), net.predict(X[:7]))


def test_string_labels_map_to_sorted_outputs_and_probabilities(sklearn):
    X, y = stream(400, 3, ["sky", "grass", "path"])
    model = adapters.OnlineMLPClassifier(random_state=0)
    model.partial_fit(X, y, classes=["sky", "path", "grass"])
    proba = model.predict_proba(X[:20])
    assert model.classes_.tolist() == ["grass", "path", "sky"]
    assert proba.shape == (20, 3)
    close(proba.sum(axis=1), np.ones(20))
    assert (model.classes_[proba.argmax(axis=1)] == model.predict(X[:20])).all()


def test_binary_probabilities_are_the_output_and_its_complement(sklearn):
    X, y = stream(100, 3, [False, True])
    model = adapters.OnlineMLPClassifier(random_state=0).partial_fit(X, y, classes=[True, False])
    p = model.net_.predict(X[:5])[:, 0]
    close(model.predict_proba(X[:5]), np.column_stack([1 - p, p]))
    assert model.predict(X[:5]).tolist() == (p >= 0.5).tolist()


def test_the_first_partial_fit_needs_the_classes(sklearn):
    X, y = stream(10, 3, [0, 1])
    with pytest.raises(ValueError, match="classes=None on the first call"):
        adapters.OnlineMLPClassifier().partial_fit(X, y)


def test_an_unseen_class_is_an_error_before_any_update(sklearn):
    X, y = stream(50, 3, [0, 1])
    model = adapters.OnlineMLPClassifier(random_state=0).partial_fit(X, y, classes=[0, 1])
    params, samples = model.net_.params.copy(), model.net_.samples
    y2 = y.copy()
    y2[30] = 2
    with pytest.raises(ValueError, match="label 2 is not one of the classes"):
        model.partial_fit(X, y2)
    assert (model.net_.params == params).all() and model.net_.samples == samples
    with pytest.raises(ValueError, match="label 'x' is not one of the classes"):
        adapters.OnlineMLPClassifier().partial_fit(X[:2], ["a", "x"], classes=["a", "b"])


def test_classes_cannot_change_or_be_fewer_than_two(sklearn):
    X, y = stream(20, 3, [0, 1])
    model = adapters.OnlineMLPClassifier().partial_fit(X, y, classes=[0, 1])
    model.partial_fit(X, y, classes=[1, 0])  # the same classes, in any order
    with pytest.raises(ValueError, match="differs from the classes of the first call"):
        model.partial_fit(X, y, classes=[0, 1, 2])
    with pytest.raises(ValueError, match="one class"):
        adapters.OnlineMLPClassifier().fit(X, np.zeros(20))


def test_pipeline_scales_then_learns_in_order(sklearn):
    from sklearn.base import clone
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    X, y = stream(300, 4, [0, 1])
    X = X * [1, 10, 100, 1000]
    pipeline = make_pipeline(StandardScaler(), adapters.OnlineMLPClassifier(random_state=0))
    pipeline.fit(X, y)
    net = MLP([4, 32, 1], activation="tanh", loss="cross_entropy", init="glorot", seed=0)
    net.learn(StandardScaler().fit_transform(X), y.astype(float))
    close(pipeline[-1].net_.params, net.params)
    assert pipeline.score(X, y) > 0.8

    model = clone(pipeline[-1]).set_params(hidden=(3,), lr=0.2)
    assert model.get_params()["hidden"] == (3,) and not hasattr(model, "net_")


def test_check_estimator_passes_but_for_the_listed_skips(sklearn):
    from sklearn.utils.estimator_checks import check_estimator
    for model in (adapters.OnlineMLPClassifier(), adapters.OnlineMLPRegressor()):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            results = check_estimator(model, on_fail=None, on_skip=None)
        failed = {r["check_name"]: repr(r["exception"]) for r in results
                  if r["status"] == "failed"}
        # scikit-learn itself skips the checks whose optional libraries (pandas) are missing
        skipped = {r["check_name"] for r in results if r["status"] == "skipped"
                   and "pandas" not in str(r["exception"])}
        assert failed == {}
        assert skipped <= set(SKLEARN_SKIPPED)
        assert len(results) > 40


# -- River -----------------------------------------------------------------------------------

@pytest.fixture
def river():
    return pytest.importorskip("river")


def rows(X):
    """Rows of ``X`` as River dicts, keyed so that the sorted keys are the columns in order."""
    return [{f"x{j}": v for j, v in reversed(list(enumerate(row)))} for row in X.tolist()]


# As for partial_fit: kernels other tests compile. The default activation is the one the
# progressive_val_score test below checks.
@pytest.mark.parametrize("classes,loss,activation", [([False, True], "sse", "logistic"),
                                                     (["a", "b", "c"], "sse", "logistic"),
                                                     (["a", "b", "c"], "cross_entropy", "tanh")])
def test_learn_one_is_learn_on_one_row(river, classes, loss, activation):
    X, y = stream(60, 3, classes)
    model = adapters.RiverMLPClassifier(classes, hidden=(4,), activation=activation, loss=loss,
                                        lr=0.3, seed=5)
    k = len(classes)
    net = MLP([3, 4, 1 if k == 2 else k], activation=activation,
              output="softmax" if loss == "cross_entropy" and k > 2 else "logistic", loss=loss,
              lr=0.3, init="glorot", seed=5)
    for x, row, label in zip(rows(X), X, y):
        model.learn_one(x, label)
        i = classes.index(label)
        net.learn(row[None], np.array([float(i)]) if k == 2 else np.array([i]))
        close(model.net.params, net.params)
    proba = model.predict_proba_one(rows(X[:1])[0])
    assert list(proba) == classes
    assert model.predict_one(rows(X[:1])[0]) == classes[int(net.predict_class(X[:1])[0])]


def test_regressor_learn_one_is_learn_on_one_row(river):
    rng = np.random.default_rng(0)
    X, y = rng.uniform(-1, 1, (40, 2)), rng.uniform(-1, 1, 40)
    model = adapters.RiverMLPRegressor(hidden=(3,), seed=1)
    net = MLP([2, 3, 1], activation="tanh", output="identity", lr=0.01, init="glorot", seed=1)
    for x, row, t in zip(rows(X), X, y):
        model.learn_one(x, t)
        net.learn(row[None], np.array([t]))
    close(model.net.params, net.params)
    assert model.predict_one(rows(X[:1])[0]) == pytest.approx(net.predict(X[:1])[0, 0], abs=1e-12)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_value_beyond_the_dtype_is_refused_before_any_update(river, dtype):
    """1e39 is a finite Python float but inf in float32: checked once converted, as MLP does."""
    # The seed's codes, not the regressor's default: their float32 kernel is compiled anyway.
    model = adapters.RiverMLPRegressor(hidden=(3,), activation="logistic", output="logistic",
                                       seed=1, dtype=dtype)
    model.learn_one({"a": 0.5, "b": -0.5}, 0.1)
    before = model.net.params.copy()
    big = {"a": 1e39, "b": 0.0}
    if dtype == "float64":  # in range: learned
        model.learn_one(big, 0.1)
        assert not np.array_equal(model.net.params, before)
        return
    with pytest.raises(ValueError, match="NaN or Inf"):
        model.learn_one(big, 0.1)
    with pytest.raises(ValueError, match="NaN or Inf"):
        model.predict_one(big)
    assert np.array_equal(model.net.params, before) and np.isfinite(model.net.params).all()
    assert model.net.samples == 1


def test_learn_many_is_learn_one_row_by_row(river):
    pd = pytest.importorskip("pandas")
    X, y = stream(80, 3, ["a", "b", "c"])
    frame = pd.DataFrame(rows(X))
    one, many = (adapters.RiverMLPClassifier(["a", "b", "c"], seed=0) for _ in range(2))
    for x, label in zip(rows(X), y):
        one.learn_one(x, label)
    many.learn_many(frame[:30], pd.Series(y[:30]))
    many.learn_many(frame[30:], pd.Series(y[30:]))
    close(many.net.params, one.net.params)
    proba = many.predict_proba_many(frame[:5])
    assert proba.columns.tolist() == ["a", "b", "c"]
    close(proba.to_numpy(), [list(many.predict_proba_one(x).values()) for x in rows(X[:5])])


def test_absent_features_are_zero_and_foreign_ones_an_error(river):
    model = adapters.RiverMLPClassifier([0, 1], features=["a", "b", "c"], seed=0)
    twin = adapters.RiverMLPClassifier([0, 1], features=["a", "b", "c"], seed=0)
    model.learn_one({"c": 0.5, "a": -1.0}, 1)  # b absent: 0
    twin.learn_one({"a": -1.0, "b": 0.0, "c": 0.5}, 1)
    close(model.net.params, twin.net.params)
    params = model.net.params.copy()
    for x, y, error in [({"a": 1.0, "d": 2.0}, 0, "features \\['d'\\] that are not inputs"),
                        ({"a": float("nan")}, 0, "NaN or Inf"),
                        ({"a": "red"}, 0, "not a real number"),
                        ({"a": 1.0}, 2, "label 2 is not one of the classes")]:
        with pytest.raises(ValueError, match=error):
            model.learn_one(x, y)
    assert (model.net.params == params).all()


def test_progressive_val_score_is_mlp_learns_prequential_accuracy(river):
    from river import datasets, evaluate, metrics
    data = list(datasets.Phishing())
    model = adapters.RiverMLPClassifier([False, True], hidden=(8,), seed=0)
    accuracy = metrics.Accuracy()
    evaluate.progressive_val_score(data, model, accuracy)
    features = sorted(data[0][0])
    X = np.array([[x[k] for k in features] for x, _ in data])
    net = MLP([len(features), 8, 1], activation="tanh", loss="cross_entropy", init="glorot",
              seed=0)
    result = net.learn(X, np.array([float(y) for _, y in data]))
    assert accuracy.get() == pytest.approx(result.accuracy, abs=1e-12)
    close(model.net.params, net.params)


def test_learn_one_is_not_slow(river):
    """Calling overhead stays near MLP's own one-row call; printed, not asserted as a time."""
    import time
    X, y = stream(2000, 9, [False, True])
    model = adapters.RiverMLPClassifier([False, True], seed=0)
    xs = rows(X)
    model.learn_one(xs[0], y[0])
    start = time.perf_counter()
    for x, label in zip(xs, y):
        model.learn_one(x, label)
    print(f"learn_one: {(time.perf_counter() - start) / len(xs) * 1e6:.1f} µs per row")
    assert model.net.samples == len(xs) + 1


# -- the peers harness -------------------------------------------------------------------------

def load_peers():
    spec = importlib.util.spec_from_file_location("peers", ROOT / "bench" / "peers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_peers_harness_runs_on_tiny_sizes():
    peers = load_peers()
    lines = []
    rows = peers.speed(sizes=[[3, 4, 1], [4, 3, 2]], target=0.001, repeats=1, out=lines.append)
    assert {(r["size"], r["peer"]) for r in rows} == {
        (size, peer) for size in ("3-4-1", "4-3-2") for peer in peers.PEERS}
    ran = {r["peer"] for r in rows if "median" in r}
    assert {"streammlp", "streammlp 1 row/call", "numpy"} <= ran
    for r in rows:
        assert ("median" in r and r["median"] > 0 and r["rows"] >= 1) or r["skipped"]
    assert lines[0].split()[:2] == ["size", "peer"]

    quality = peers.quality(limit=40, out=lines.append)
    if importlib.util.find_spec("river") is not None:
        assert {r["learner"] for r in quality} == {"streammlp", "streammlp seed", "River LogReg",
                                                   "River Hoeffding"}
        assert all(0 <= r["accuracy"] <= 1 and r["samples"] == 40 for r in quality)
    else:
        assert quality == []
