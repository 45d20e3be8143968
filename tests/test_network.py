"""MLP against independent oracles: finite differences and the plain NumPy reference."""

import copy
import pickle

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from streammlp import MLP, reference
from conftest import CLASSIFIER, assert_same_state, changing_stream

# The oracle cases: (depth, activation, output, loss), depth counting weight layers. Each
# distinct combination compiles its own kernel (~10 s on a cold cache), so there is no full
# product. Depth 2 (one hidden layer: ``_learn_rows_one_hidden``, where the output layer is
# written out) takes every hidden activation and every (output, loss) pair. Depth 3 (the loop
# over layers, ``_learn_rows``) takes a hidden derivative read from S_postA (logistic) and one
# read from S_preA (relu), with a single output and with softmax; its output layer is the
# shared ``_output_error`` that depth 2 checks for every pair. Depth 1 (no hidden layer) takes
# the default. The hypothesis test below draws any depth in float32 and float64.
CASES = [(1, "logistic", "logistic", "sse"),
         (2, "logistic", "logistic", "sse"), (2, "tanh", "softmax", "cross_entropy"),
         (2, "relu", "logistic", "cross_entropy"), (2, "identity", "identity", "sse"),
         (3, "logistic", "logistic", "sse"), (3, "relu", "softmax", "cross_entropy")]


def make(depth, activation="logistic", output="logistic", loss="sse", bias=True, dtype="float64",
         lr=0.1, seed=0, inputs=3, outputs=2):
    layers = [inputs] + [5, 4][: depth - 1] + [outputs]
    net = MLP(layers, activation=activation, output=output, loss=loss, lr=lr, bias=bias,
              seed=seed, dtype=dtype)
    if bias:  # non-zero biases, so that their gradients are exercised from the first step
        for b in net.biases:
            b[...] = np.random.default_rng(seed + 1).uniform(-0.5, 0.5, b.shape)
    return net


def targets(output, n, k, rng):
    if output == "softmax":
        return np.eye(k)[rng.integers(0, k, n)]
    return rng.uniform(0.05, 0.95, (n, k))


def loss_of(weights, biases, x, T, activation, output, loss):
    """The objective of one sample, from the reference's forward pass (no kernel code)."""
    _, S_postA = reference.forward(weights, biases, x, activation, output)
    p = S_postA[-1]
    if loss == "sse":
        return 0.5 * np.sum((p - T) ** 2)
    if output == "softmax":
        return -np.sum(T * np.log(p))
    return -np.sum(T * np.log(p) + (1 - T) * np.log(1 - p))


@pytest.mark.parametrize("depth,activation,output,loss", CASES)
@pytest.mark.parametrize("bias", [True, False])
def test_one_step_is_minus_lr_times_numerical_gradient(depth, activation, output, loss, bias, rng):
    net = make(depth, activation, output, loss, bias=bias, lr=0.3)
    x = rng.uniform(-1, 1, 3)
    T = targets(output, 1, 2, rng)[0]
    weights = [w.copy() for w in net.weights]
    biases = [b.copy() for b in net.biases]
    params = weights + (biases if bias else [])
    h = 1e-6
    numerical = []
    for p in params:
        g = np.zeros_like(p)
        for idx in np.ndindex(p.shape):
            old = p[idx]
            p[idx] = old + h
            up = loss_of(weights, biases, x, T, activation, output, loss)
            p[idx] = old - h
            down = loss_of(weights, biases, x, T, activation, output, loss)
            p[idx] = old
            g[idx] = (up - down) / (2 * h)
        numerical.append(g)
    before = [p.copy() for p in (net.weights + (net.biases if bias else []))]
    net.learn(x.reshape(1, -1), T.reshape(1, -1))
    after = net.weights + (net.biases if bias else [])
    step = np.concatenate([(a - b).ravel() for a, b in zip(after, before)])
    expected = -0.3 * np.concatenate([g.ravel() for g in numerical])
    assert np.linalg.norm(step - expected) <= 1e-6 * np.linalg.norm(expected)
    if not bias:
        assert all(not np.any(b) for b in net.biases)


@pytest.mark.parametrize("depth,activation,output,loss", CASES)
def test_stream_matches_numpy_reference(depth, activation, output, loss, rng):
    net = make(depth, activation, output, loss, lr=0.2)
    weights = [w.copy() for w in net.weights]
    biases = [b.copy() for b in net.biases]
    X = rng.uniform(-1, 1, (400, 3))
    Y = targets(output, 400, 2, rng)
    result = net.learn(X, Y)
    expected_loss = reference.learn(weights, biases, X, Y, 0.2, activation, output, loss)
    for got, want in zip(net.weights + net.biases, weights + biases):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    # Prequential figures: each sample's loss and class from its forward pass before its update.
    np.testing.assert_allclose(result.sample_loss, expected_loss, rtol=1e-10, atol=1e-12)
    assert result.loss == pytest.approx(expected_loss.sum(), rel=1e-12)
    assert np.array_equal(result.actual, Y.argmax(axis=1))
    assert result.correct == np.count_nonzero(result.predicted == result.actual)


def test_integer_labels_are_one_hot_targets(rng):
    X = rng.uniform(-1, 1, (300, 3))
    labels = rng.integers(0, 3, 300)
    a = MLP([3, 6, 3], **CLASSIFIER, lr=0.1, seed=4)
    b, c = copy.deepcopy(a), copy.deepcopy(a)
    ra = a.learn(X, labels)  # int64 labels as they are: one-hot without the NumPy checks
    rb = b.learn(X, np.eye(3)[labels])
    c.learn(X.tolist(), labels.astype(np.int32).tolist())  # through the checks
    assert np.array_equal(a.params, b.params) and np.array_equal(a.params, c.params)
    assert np.array_equal(ra.actual, labels)
    assert ra.correct == rb.correct


def test_a_new_learning_rate_applies_from_the_next_row(rng):
    X, y = rng.uniform(-1, 1, (40, 3)), rng.integers(0, 2, 40).astype(float)
    net, fresh = MLP([3, 4, 1], lr=0.1, seed=2), MLP([3, 4, 1], lr=0.7, seed=2)
    net.lr = 0.7
    net.learn(X, y), fresh.learn(X, y)
    assert net.lr == 0.7 and np.array_equal(net.params, fresh.params)
    with pytest.raises(ValueError, match="lr=0"):
        net.lr = 0


def test_predict_and_classes_match_reference_forward(rng):
    net = make(2, outputs=3, lr=0.1)
    X = rng.uniform(-1, 1, (50, 3))
    out = net.predict(X)
    want = np.array([reference.forward(net.weights, net.biases, x)[1][-1] for x in X])
    np.testing.assert_allclose(out, want, rtol=0, atol=1e-14)
    assert np.array_equal(net.predict_class(X), want.argmax(axis=1))
    one = make(2, outputs=1)
    assert np.array_equal(one.predict_class(X), (one.predict(X)[:, 0] >= 0.5).astype(int))


def test_float32_agrees_with_float64(rng):
    X = rng.uniform(-1, 1, (2000, 3))
    y = (X[:, 0] >= 0).astype(float)
    a = MLP([3, 8, 1], lr=0.5, seed=5)
    b = MLP([3, 8, 1], lr=0.5, seed=5, dtype="float32")
    assert b.params.dtype == np.float32
    np.testing.assert_array_equal(b.params, a.params.astype(np.float32))
    ra, rb = a.learn(X, y), b.learn(X, y)
    np.testing.assert_allclose(b.params, a.params, rtol=0, atol=2e-4)
    assert abs(ra.correct - rb.correct) <= 5
    assert ra.sse == pytest.approx(rb.sse, rel=1e-3)


def test_seed_makes_the_same_network_and_glorot_is_scaled():
    assert np.array_equal(MLP([4, 8, 2], seed=1).params, MLP([4, 8, 2], seed=1).params)
    assert not np.array_equal(MLP([4, 8, 2], seed=1).params, MLP([4, 8, 2], seed=2).params)
    uniform = MLP([200, 300, 2], seed=0)
    glorot = MLP([200, 300, 2], init="glorot", seed=0)
    assert 0.99 < np.abs(uniform.weights[0]).max() <= 1.0
    limit = np.sqrt(6 / 500)
    assert 0.99 * limit < np.abs(glorot.weights[0]).max() <= limit


def test_weights_are_views_into_one_buffer():
    net = MLP([3, 4, 2], seed=0)
    net.weights[1][2, 1] = 42.0
    net.biases[0][3] = -7.0
    assert 42.0 in net.params and -7.0 in net.params
    assert all(np.shares_memory(w, net.params) for w in net.weights + net.biases)
    assert [w.shape for w in net.weights] == [(3, 4), (4, 2)]


def test_save_load_round_trip_continues_identically(tmp_path, rng):
    # Two hidden layers, float32 and scaling: the kernel the race and fleet tests compile too.
    net = MLP([3, 5, 4, 2], **CLASSIFIER, lr=0.05, seed=9, dtype="float32", scale="standard")
    X, labels = rng.uniform(-1, 1, (500, 3)), rng.integers(0, 2, 500)
    net.learn(X[:200], labels[:200])
    net.save(tmp_path / "net.npz")
    loaded = MLP.load(tmp_path / "net.npz")
    assert loaded.spec() == net.spec()
    assert loaded.params.dtype == np.float32 and np.array_equal(loaded.params, net.params)
    assert (loaded.samples, loaded.correct_total, loaded.loss_total) == \
        (net.samples, net.correct_total, net.loss_total)
    ra, rb = net.learn(X[200:], labels[200:]), loaded.learn(X[200:], labels[200:])
    assert np.array_equal(loaded.params, net.params)
    assert np.array_equal(ra.sample_loss, rb.sample_loss)


def test_load_refuses_what_is_not_a_network(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="not a streammlp network file"):
        MLP.load(bad)


# (expected message, X, y, outputs of the net, dtype of the net)
BAD_INPUTS = [
    ("X has 2 columns; this network takes 3", np.zeros((4, 2)), np.zeros(4), 1, "float64"),
    ("expected \\(n, 3\\) rows", np.zeros(3), np.zeros(1), 1, "float64"),
    ("empty batch", np.zeros((0, 3)), np.zeros(0), 1, "float64"),
    ("X has NaN or Inf in row 2", np.array([[0, 0, 0]] * 2 + [[0, np.nan, 0]] + [[0, 0, 0]]),
     np.zeros(4), 1, "float64"),
    ("y has NaN or Inf in row 3", np.zeros((4, 3)), np.array([0, 0, 0, np.inf]), 1, "float64"),
    ("y has shape \\(5,\\) for 4 rows", np.zeros((4, 3)), np.zeros(5), 1, "float64"),
    ("X has dtype <U1", np.array([["a"] * 3] * 4), np.zeros(4), 1, "float64"),
    ("label 3 at row 1 is out of range", np.zeros((4, 3)), np.array([0, 3, 1, 0]), 3, "float64"),
    ("label -1 at row 0 is out of range", np.zeros((4, 3)), np.array([-1, 0, 1, 0]), 3, "float64"),
    ("label 255 at row 0 is out of range", np.zeros((4, 3)), np.array([255, 0, 1, 0], np.uint8), 3,
     "float64"),
    ("label 9223372036854775809 at row 2", np.zeros((4, 3)), np.array([0, 1, 2**63 + 1, 0],
                                                                      np.uint64), 3, "float64"),
    ("integer class labels", np.zeros((4, 3)), np.array([0.0, 1.0, 2.0, 0.0]), 3, "float64"),
    ("y has shape \\(4, 2\\)", np.zeros((4, 3)), np.zeros((4, 2)), 3, "float64"),
    # as many targets as rows x outputs, in the net's dtype, but not (rows, outputs)
    ("y has shape \\(1, 4\\) for 4 rows", np.zeros((4, 3)), np.zeros((1, 4)), 1, "float64"),
    ("y has shape \\(12,\\) for 4 rows", np.zeros((4, 3)), np.zeros(12), 3, "float64"),
    ("not a rectangular array", [[1, 2, 3], [1, 2]], [0, 1], 1, "float64"),
    # finite in float64, infinite once cast to the net's float32
    ("X has NaN or Inf in row 0", np.full((1, 3), 1e300), np.zeros(1), 1, "float32"),
]


@pytest.mark.parametrize("message,X,y,outputs,dtype", BAD_INPUTS,
                         ids=[b[0][:30] for b in BAD_INPUTS])
def test_bad_input_raises_before_any_update(message, X, y, outputs, dtype):
    net = MLP([3, 4, outputs], seed=0, dtype=dtype)
    net.learn(np.ones((2, 3)), np.zeros(2, dtype=int))
    before = net.params.copy(), net.samples
    with pytest.raises(ValueError, match=message):
        net.learn(X, y)
    assert np.array_equal(net.params, before[0]) and net.samples == before[1]


@pytest.mark.parametrize("kwargs,message", [
    (dict(layers=[3]), "at least two positive sizes"),
    (dict(layers=[3, 0, 1]), "at least two positive sizes"),
    (dict(layers=[3, 1], activation="sigmoid"), "activation='sigmoid'"),
    (dict(layers=[3, 2], output="softmax"), "is not supported"),
    (dict(layers=[3, 1], output="softmax", loss="cross_entropy"), "at least 2 outputs"),
    (dict(layers=[3, 1], lr=-1), "lr=-1"),
    (dict(layers=[3, 1], dtype="float16"), "dtype='float16'"),
])
def test_bad_construction_is_explained(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MLP(**kwargs)


@settings(max_examples=25, deadline=None)
@given(layers=st.lists(st.integers(1, 6), min_size=2, max_size=4),
       dtype=st.sampled_from(["float64", "float32"]), bias=st.booleans(),
       n=st.integers(1, 40), seed=st.integers(0, 2**16))
def test_any_shape_matches_reference(layers, dtype, bias, n, seed):
    net = MLP(layers, lr=0.5, bias=bias, seed=seed, dtype=dtype)
    r = np.random.default_rng(seed)
    X = r.uniform(-1, 1, (n, layers[0]))
    Y = r.uniform(0, 1, (n, layers[-1]))
    weights = [w.astype(np.float64) for w in net.weights]
    biases = [b.astype(np.float64) for b in net.biases]
    # The reference runs in float64 on the float32-rounded data a float32 net sees.
    Xd = X.astype(dtype).astype(np.float64)
    Yd = Y.astype(dtype).astype(np.float64)
    result = net.learn(X, Y)
    reference.learn(weights, biases, Xd, Yd, 0.5, bias=bias)
    atol = 1e-12 if dtype == "float64" else 1e-4
    for got, want in zip(net.weights + net.biases, weights + biases):
        np.testing.assert_allclose(got, want, rtol=0, atol=atol)
    assert result.n == n and net.samples == n


def test_a_deep_copy_is_an_independent_network(rng):
    net = MLP([3, 4, 1], seed=0)
    twin = copy.deepcopy(net)
    X, y = rng.uniform(-1, 1, (50, 3)), rng.uniform(0, 1, 50)
    net.learn(X, y)
    assert not np.array_equal(net.params, twin.params)
    assert all(np.shares_memory(w, twin.params) for w in twin.weights + twin.biases)
    twin.learn(X, y)
    assert np.array_equal(net.params, twin.params)


def test_arrays_the_kernel_was_not_compiled_for_are_converted_not_compiled_for(rng):
    """Arrays decoded from frames are read-only, and others come in any order, byte order,
    alignment or dtype: they are learned as the same values as the net's own arrays, without
    compiling anew."""
    net, twin = MLP([3, 4, 1], seed=0), MLP([3, 4, 1], seed=0)
    X = rng.uniform(-1, 1, (10, 3))
    read_only = X.copy()
    read_only.flags.writeable = False
    signatures = len(net._learn.signatures)
    unaligned = np.ndarray(X.shape, X.dtype, buffer=bytearray(X.nbytes + 1), offset=1)
    unaligned[...] = X
    net.predict(unaligned)  # Numba's dispatcher then takes X.astype(">f8") for its type
    for other in (read_only, np.asfortranarray(X), X.astype(np.float32), (X > 0).astype(int),
                  X.astype(">f8"), unaligned):
        y = np.array(other[:, 0], dtype=np.float64)  # targets as the kernel takes them
        net.learn(other, y)
        twin.learn(np.ascontiguousarray(other, dtype=np.float64), y)
    net.predict(read_only)
    assert len(net._learn.signatures) == signatures == 1
    assert np.array_equal(net.params, twin.params)


@pytest.mark.parametrize("layers", [[3, 4, 1], [3, 5, 3], [3, 4, 4, 1]])
def test_calls_of_one_row_learn_as_one_batch(layers, rng):
    """A call of one row keeps its records as numbers until they are read: they, the weights
    and the totals are those of the same rows in one call."""
    one_call, row_by_row = MLP(layers, seed=0), MLP(layers, seed=0)
    X = rng.uniform(-1, 1, (60, 3))
    y = rng.integers(0, layers[-1], 60) if layers[-1] > 1 else (X[:, 0] > 0).astype(float)
    whole = one_call.learn(X, y)
    rows = [row_by_row.learn(X[i:i + 1], y[i:i + 1]) for i in range(60)]
    assert np.array_equal(one_call.params, row_by_row.params)
    rows[0] = copy.deepcopy(rows[0])  # a result copied before its records were read
    for name in ("sample_loss", "predicted", "actual"):
        assert np.array_equal(np.concatenate([getattr(r, name) for r in rows]),
                              getattr(whole, name))
    assert sum(r.correct for r in rows) == whole.correct == row_by_row.correct_total
    assert row_by_row.samples == one_call.samples == 60
    assert row_by_row.loss_total == pytest.approx(one_call.loss_total, rel=1e-12)
    assert [r.loss for r in rows] == whole.sample_loss.tolist()
    assert pickle.loads(pickle.dumps(rows[1], protocol=0)).predicted == rows[1].predicted


def test_a_net_without_biases_set_after_it_was_made_leaves_them_at_zero(rng):
    net = MLP([3, 4, 1], seed=0)
    net.bias = False
    X = rng.uniform(-1, 1, (20, 3))
    net.learn(X, X[:, 0])
    net.learn(X[:1], X[:1, 0])
    assert not any(b.any() for b in net.biases)


def messages_for(outputs, rng):
    """A mix of good and bad (x, y) messages for a net of 3 inputs."""
    def good(n):
        y = rng.integers(0, outputs, n) if outputs > 1 else rng.uniform(0, 1, n)
        return rng.uniform(-1, 1, (n, 3)), y
    nan_x = good(4)[0]
    nan_x[2, 1] = np.nan
    return [
        good(1), good(5), (rng.uniform(-1, 1, (2, 2)), good(2)[1]), good(3),
        (nan_x, good(4)[1]), good(1), (good(2)[0], good(3)[1]), (np.zeros((0, 3)), good(0)[1]),
        (good(2)[0], np.array([0, outputs])), (good(2)[0], np.array([True, False])),
        (good(2)[0].astype(np.float32), good(2)[1]), good(2),
    ]


@pytest.mark.parametrize("outputs", [1, 3])
def test_check_many_gives_each_message_its_own_verdict(outputs, rng):
    net = MLP([3, 4, outputs], seed=0, output="softmax" if outputs > 1 else "logistic",
              loss="cross_entropy" if outputs > 1 else "sse")
    messages = messages_for(outputs, rng)
    xs, ys, expected = [], [], {}
    for i, (x, y) in enumerate(messages):
        try:
            x = net.check_inputs(x)
            ys.append(net.check_targets(y, len(x)))
            xs.append(x)
        except ValueError as e:
            expected[i] = str(e)
    X, Y, errors = net.check_many(messages)
    assert {i: str(e) for i, e in errors.items()} == expected and len(expected) >= 4
    assert np.array_equal(X, np.concatenate(xs)) and np.array_equal(Y, np.concatenate(ys))
    # All good and alike: the one-pass path gives the same rows.
    good = [m for i, m in enumerate(messages) if i not in expected and m[0].dtype == np.float64]
    X2, Y2, errors2 = net.check_many(good)
    assert not errors2 and len(X2) == sum(len(x) for x, _ in good)


def test_a_network_rewinds_in_place():
    net = MLP([3, 4, 1], seed=0, scale="standard")
    X, y = changing_stream()
    net.learn(X[:500], y[:500])
    before, weights = copy.deepcopy(net), net.weights[0]
    mark = net.mark()
    net.learn(X[500:900], y[500:900])
    net.rewind(mark)
    assert net.weights[0] is weights
    assert_same_state(net.state(), before.state())
    assert np.array_equal(net.learn(X[900:], y[900:]).sample_loss,
                          before.learn(X[900:], y[900:]).sample_loss)
    assert np.array_equal(net.params, before.params)
