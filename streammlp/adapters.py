"""An :class:`~streammlp.MLP` behind scikit-learn's and River's interfaces.

- scikit-learn: ``OnlineMLPClassifier`` and ``OnlineMLPRegressor``, with
  ``partial_fit``, ``fit``, ``predict`` (and ``predict_proba``), usable in a
  ``Pipeline``, ``clone``, ``GridSearchCV``.
- River: ``RiverMLPClassifier`` and ``RiverMLPRegressor``, with ``learn_one``,
  ``predict_one`` (and ``predict_proba_one``) and the ``*_many`` methods, so
  they drop into ``river.evaluate.progressive_val_score``.

Every one of them trains the wrapped network with :meth:`MLP.learn`: one
exact gradient step per row, in the order given, nothing shuffled or batched.
Their defaults are not the seed's (logistic hidden units, weights uniform in
[-1, 1], SSE): 32 tanh hidden units, Glorot weights, cross-entropy for
classes, which learn faster on most streams (``bench/peers.py``); pass
``activation="logistic", init="uniform", loss="sse"`` for the seed's.

Neither library is a dependency of streammlp, and ``import streammlp.adapters``
imports neither. Their base classes are needed all the same (``check_estimator``,
``clone`` and ``progressive_val_score`` test ``isinstance`` against them), so each
public class is made the first time its name is looked up, by the module
``__getattr__`` below (PEP 562): it imports the library, then mixes the
behaviour written here in plain classes (``_SklearnClassifier``, ...) with
that library's base classes. Install the library with an extra::

    pip install 'streammlp[sklearn]'   # or 'streammlp[river]'
"""

from __future__ import annotations

import importlib
import math
import types
from collections.abc import Hashable

import numpy as np

from .network import MLP, classify

SKLEARN = ("OnlineMLPClassifier", "OnlineMLPRegressor")
RIVER = ("RiverMLPClassifier", "RiverMLPRegressor")
__all__ = [*SKLEARN, *RIVER]

_built: dict[str, type] = {}  # the public classes made so far, by name


def __getattr__(name: str) -> type:
    """Make (once) and return a public class, importing its host library."""
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if name not in _built:
        if name in SKLEARN:
            base = _require("sklearn.base", "sklearn")
            _built["OnlineMLPClassifier"] = _host(
                "OnlineMLPClassifier", _SklearnClassifier, base.ClassifierMixin, base.BaseEstimator)
            _built["OnlineMLPRegressor"] = _host(
                "OnlineMLPRegressor", _SklearnRegressor, base.RegressorMixin, base.BaseEstimator)
        else:
            base = _require("river.base", "river")
            _built["RiverMLPClassifier"] = _host(
                "RiverMLPClassifier", _RiverClassifier, base.MiniBatchClassifier)
            _built["RiverMLPRegressor"] = _host(
                "RiverMLPRegressor", _RiverRegressor, base.MiniBatchRegressor)
    return _built[name]


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


def _require(module: str, extra: str) -> types.ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(f"{module.split('.')[0]} is not installed; the adapters need it: "
                          f"pip install 'streammlp[{extra}]'") from e


def _host(name: str, behaviour: type, *bases: type) -> type:
    """The class ``name``: ``behaviour`` first in the MRO, then the host library's ``bases``."""
    return types.new_class(name, (behaviour, *bases), exec_body=lambda ns: ns.update(
        __module__=__name__, __qualname__=name, __doc__=behaviour.__doc__))


def _hidden(hidden) -> list[int]:
    try:
        return [int(n) for n in hidden]
    except TypeError:
        raise ValueError(f"hidden={hidden!r}; expected a sequence of layer sizes, e.g. (16,) "
                         "or (64, 64); () for no hidden layer") from None


def _class_index(classes) -> dict:
    """``{label: output index}``; ``ValueError`` for fewer than two labels or a repeated one."""
    labels = list(classes)
    index = {c: i for i, c in enumerate(labels)}
    if len(index) < 2:
        raise ValueError(f"classes={labels!r}: one class; a classifier needs at least two")
    if len(index) != len(labels):
        raise ValueError(f"classes={labels!r} repeats a label; list each label once")
    return index


def _encode(index: dict, y: list) -> np.ndarray:
    """Output index of every label in ``y``; ``ValueError`` naming the first unknown one."""
    try:
        return np.fromiter((index[v] for v in y), dtype=np.int64, count=len(y))
    except KeyError as e:
        raise _unknown(index, e.args[0]) from None


def _unknown(index: dict, label) -> ValueError:
    return ValueError(f"label {label!r} is not one of the classes {list(index)}; every label must "
                      "be given up front (classes=...): the network's outputs are fixed when it "
                      "is made")


def _class_targets(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """What :meth:`MLP.learn` takes: 0/1 for two classes (one output), else the labels (one-hot)."""
    return labels.astype(np.float64) if n_classes == 2 else labels


def _output_loss(n_classes: int, loss: str) -> tuple[str, str]:
    """Output and loss: one logistic output for two classes, else one logistic or softmax each."""
    if loss not in ("sse", "cross_entropy"):
        raise ValueError(f"loss={loss!r}; expected 'sse' or 'cross_entropy'")
    return ("softmax" if loss == "cross_entropy" and n_classes > 2 else "logistic"), loss


def _probabilities(out: np.ndarray) -> np.ndarray:
    """Rows of class probabilities from the network's outputs ``(n, outputs)``.

    One output ``p`` gives ``[1 - p, p]``; several are divided by their sum,
    which changes nothing for softmax and makes logistic (SSE) outputs sum to 1.
    """
    out = out.astype(np.float64)
    if out.shape[1] == 1:
        return np.hstack([1.0 - out, out])
    total = out.sum(axis=1, keepdims=True)
    return out / np.where(total > 0, total, 1.0)


# -- scikit-learn ------------------------------------------------------------------------------

class _SklearnMLP:
    """What the two scikit-learn estimators share: the network, checked input, fitting."""

    net_: MLP

    def _network(self, n_inputs: int, n_outputs: int, output: str, loss: str) -> MLP:
        return MLP([n_inputs, *_hidden(self.hidden), n_outputs], activation=self.activation,
                   output=output, loss=loss, lr=self.lr, bias=self.bias, init=self.init,
                   seed=self.random_state, dtype=self.dtype)

    def _validate(self, X, y="no_validation", reset: bool = False, **kwargs):
        """``X`` (and ``y``) checked by scikit-learn; ``reset`` records the number of features."""
        from sklearn.utils.validation import validate_data
        return validate_data(self, X, y, reset=reset, dtype=(np.float64, np.float32), **kwargs)

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "net_")

    def fit(self, X, y):
        """A new network trained on the rows in order, ``epochs`` times over, one step per row."""
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise ValueError(f"epochs={self.epochs!r}; expected a whole number of passes >= 1")
        self.__dict__.pop("net_", None)
        X, y = self._first_fit(X, y)
        for _ in range(self.epochs):
            self._partial_fit(X, y)
        return self

    def predict_outputs(self, X) -> np.ndarray:
        """The network's outputs S_postA,O, shape ``(n, outputs)``."""
        from sklearn.utils.validation import check_is_fitted
        check_is_fitted(self)
        return self.net_.predict(self._validate(X))


class _SklearnClassifier(_SklearnMLP):
    """A scikit-learn classifier trained online: one exact gradient step per row, in order.

    Two classes get one logistic output (class ``classes_[1]`` when it is
    >= 0.5, the seed's rule); ``k > 2`` get ``k`` outputs, logistic with
    ``loss="sse"`` or softmax with ``loss="cross_entropy"``. The classes fix the
    outputs, so the first ``partial_fit`` needs all of them (``classes=``), and a
    label outside them is an error, not a new output.

    Parameters
    ----------
    hidden
        Units of each hidden layer; ``()`` for none.
    activation
        Hidden f_A: ``logistic``, ``tanh``, ``relu`` or ``identity``.
    loss
        ``sse`` (½ summed squared error, the seed's) or ``cross_entropy``.
    lr
        Learning rate of every step.
    bias, init, dtype
        As :class:`~streammlp.MLP`.
    epochs
        Passes over the rows that :meth:`fit` makes (:meth:`partial_fit` makes one).
    random_state
        Seed of the initial weights (``MLP``'s ``seed``): an int, or None.

    Attributes
    ----------
    net_ : MLP
        The network; ``net_.weights`` and ``net_.biases`` are its parameters.
    classes_ : ndarray
        The class labels, sorted; column ``j`` of :meth:`predict_proba` is ``classes_[j]``.
    prequential_ : Prequential
        Test-then-train figures of the last batch learned (each row scored before its step).

    Examples
    --------
    >>> import pytest; _ = pytest.importorskip("sklearn")
    >>> import numpy as np
    >>> from streammlp.adapters import OnlineMLPClassifier
    >>> X = np.random.default_rng(1).uniform(-1, 1, (4000, 3))
    >>> y = np.where(X[:, 0] >= 0, "right", "left")
    >>> model = OnlineMLPClassifier(hidden=(4,), lr=1.0, random_state=0)
    >>> model = model.partial_fit(X[:2000], y[:2000], classes=["left", "right"])
    >>> model = model.partial_fit(X[2000:], y[2000:])      # goes on where it stopped
    >>> model.prequential_.accuracy > 0.95
    True
    >>> model.predict([[0.5, 0.1, -0.3], [-0.5, 0.2, 0.9]])
    array(['right', 'left'], dtype='<U5')
    """

    def __init__(self, hidden: tuple[int, ...] = (32,), activation: str = "tanh",
                 loss: str = "cross_entropy", lr: float = 0.1, bias: bool = True,
                 init: str = "glorot", epochs: int = 1, random_state: int | None = None,
                 dtype: str = "float64") -> None:
        self.hidden, self.activation, self.loss, self.lr = hidden, activation, loss, lr
        self.bias, self.init, self.epochs, self.random_state = bias, init, epochs, random_state
        self.dtype = dtype

    def _first_fit(self, X, y):
        from sklearn.utils.multiclass import check_classification_targets
        X, y = self._validate(X, y, reset=True)
        check_classification_targets(y)
        self._start(X.shape[1], np.unique(y))
        return X, y

    def _start(self, n_inputs: int, classes: np.ndarray) -> None:
        index = _class_index(classes.tolist())
        self.net_ = self._network(n_inputs, 1 if len(index) == 2 else len(index),
                                  *_output_loss(len(index), self.loss))
        self.classes_, self._index = classes, index

    def partial_fit(self, X, y, classes=None):
        """Train on the rows of ``X`` in order, one gradient step each.

        ``classes`` (every label the stream will have) is required on the first
        call, which makes the network; later calls may repeat it, unchanged.
        """
        from sklearn.utils.multiclass import check_classification_targets
        first = not hasattr(self, "net_")
        if first and classes is None:
            raise ValueError("classes=None on the first call to partial_fit; pass every label "
                             "the stream will have, e.g. partial_fit(X, y, classes=[0, 1, 2])")
        X, y = self._validate(X, y, reset=first)
        check_classification_targets(y)
        if first:
            self._start(X.shape[1], np.unique(classes))
        elif classes is not None and not np.array_equal(np.unique(classes), self.classes_):
            raise ValueError(f"classes={list(np.unique(classes))} differs from the classes of the "
                             f"first call, {self.classes_.tolist()}; they cannot change")
        return self._partial_fit(X, y)

    def _partial_fit(self, X: np.ndarray, y: np.ndarray):
        labels = _encode(self._index, y.tolist())
        self.prequential_ = self.net_.learn(X, _class_targets(labels, len(self.classes_)))
        return self

    def predict_proba(self, X) -> np.ndarray:
        """Probability of each class, shape ``(n, classes)``, columns in ``classes_`` order."""
        return _probabilities(self.predict_outputs(X))

    def predict(self, X) -> np.ndarray:
        """Class of every row: :meth:`MLP.predict_class` mapped to ``classes_``."""
        classes = classify(self.predict_outputs(X))  # first: it raises NotFittedError if unfitted
        return self.classes_[classes]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = True
        return tags


class _SklearnRegressor(_SklearnMLP):
    """A scikit-learn regressor trained online: one exact gradient step per row, in order.

    SSE loss; ``y`` of shape ``(n,)`` gives one output (and :meth:`predict`
    returns ``(n,)``), ``(n, k)`` gives ``k`` outputs.

    Parameters
    ----------
    hidden
        Units of each hidden layer; ``()`` for none.
    activation
        Hidden f_A: ``logistic``, ``tanh``, ``relu`` or ``identity``.
    output
        Output activation: ``identity`` (any real target) or ``logistic``
        (targets in [0, 1], as in the seed).
    lr, bias, init, dtype
        As :class:`~streammlp.MLP`.
    epochs
        Passes over the rows that :meth:`fit` makes (:meth:`partial_fit` makes one).
    random_state
        Seed of the initial weights (``MLP``'s ``seed``): an int, or None.

    Attributes
    ----------
    net_ : MLP
        The network.
    n_outputs_ : int
        Outputs of the network: 1, or the columns of a 2-D ``y``.
    prequential_ : Prequential
        Test-then-train figures of the last batch learned.

    Examples
    --------
    >>> import pytest; _ = pytest.importorskip("sklearn")
    >>> import numpy as np
    >>> from streammlp.adapters import OnlineMLPRegressor
    >>> X = np.random.default_rng(1).uniform(-1, 1, (20000, 2))
    >>> model = OnlineMLPRegressor(hidden=(8,), lr=0.05, random_state=0)
    >>> model = model.partial_fit(X, X[:, 0] * X[:, 1])
    >>> model.prequential_.n, float(abs(model.predict([[0.5, 0.5]])[0] - 0.25)) < 0.1
    (20000, True)
    """

    def __init__(self, hidden: tuple[int, ...] = (32,), activation: str = "tanh",
                 output: str = "identity", lr: float = 0.01, bias: bool = True,
                 init: str = "glorot", epochs: int = 1, random_state: int | None = None,
                 dtype: str = "float64") -> None:
        self.hidden, self.activation, self.output, self.lr = hidden, activation, output, lr
        self.bias, self.init, self.epochs, self.random_state = bias, init, epochs, random_state
        self.dtype = dtype

    def _first_fit(self, X, y):
        X, y = self._validate(X, y, reset=True, multi_output=True, y_numeric=True)
        self._start(X.shape[1], y)
        return X, y

    def _start(self, n_inputs: int, y: np.ndarray) -> None:
        n_outputs = 1 if y.ndim == 1 else y.shape[1]
        self.net_ = self._network(n_inputs, n_outputs, self.output, "sse")
        self.n_outputs_ = n_outputs

    def partial_fit(self, X, y):
        """Train on the rows of ``X`` in order, one step each; the first call makes the network."""
        first = not hasattr(self, "net_")
        X, y = self._validate(X, y, reset=first, multi_output=True, y_numeric=True)
        if first:
            self._start(X.shape[1], y)
        return self._partial_fit(X, y)

    def _partial_fit(self, X: np.ndarray, y: np.ndarray):
        self.prequential_ = self.net_.learn(X, y)
        return self

    def predict(self, X) -> np.ndarray:
        """Outputs of every row: ``(n,)`` for one output, else ``(n, outputs)``."""
        out = self.predict_outputs(X).astype(np.float64)
        return out[:, 0] if self.n_outputs_ == 1 else out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


# -- River --------------------------------------------------------------------------------------

class _RiverMLP:
    """What the two River models share: a dict ``x`` as one row of the network's inputs.

    The inputs are ``features`` if given, else the keys of the first ``x`` seen
    (learned or predicted), sorted by name so that the order of a dict's keys
    never matters; the network is made then. A feature that is absent from an
    ``x`` (or None) counts as 0, River's convention for sparse dicts; a feature
    that is not an input is an error, since the network has no weights for it.
    """

    net: MLP | None = None  # made on the first x

    def _row(self, x: dict) -> np.ndarray:
        """``x`` written into the (1, inputs) input buffer, checked as ``MLP.check_inputs`` does."""
        if self.net is None:
            self._start(x)
        values = [x.get(k) for k in self._features]
        if len(x) != len(values) or None in values:  # a sparse or a foreign x: the slow path
            unknown = [k for k in x if k not in self._feature_set]
            if unknown:
                raise ValueError(f"x has features {unknown} that are not inputs of this model, "
                                 f"{self._features}; list them all up front with features=[...]")
            values = [0.0 if v is None else v for v in values]
        try:
            self._x[0] = values
            finite = math.isfinite(sum(values))  # a sum that overflows is checked one by one below
        except (TypeError, ValueError):
            raise ValueError(f"x has a value that is not a real number: {x!r}; encode categorical "
                             "features as numbers first") from None
        if not finite and not np.isfinite(self._x).all():
            raise ValueError(f"x has NaN or Inf: {x!r}; clean or drop it")
        return self._x

    def _start(self, x: dict) -> None:
        self._features = list(self.features) if self.features else sorted(x, key=str)
        self._feature_set = frozenset(self._features)
        self.net = MLP([len(self._features), *_hidden(self.hidden), self._n_outputs()],
                       activation=self.activation, output=self._output(), loss=self._loss(),
                       lr=self.lr, bias=self.bias, init=self.init, seed=self.seed,
                       dtype=self.dtype)
        self._x = np.zeros((1, self.net.n_inputs), dtype=self.dtype)
        self._t = np.zeros((1, self.net.n_outputs), dtype=self.dtype)

    def _rows(self, X) -> np.ndarray:
        """A DataFrame's rows as the network's inputs, columns in the features' order."""
        if self.net is None:
            self._start(dict.fromkeys(X.columns, 0.0))
        unknown = [k for k in X.columns if k not in self._feature_set]
        if unknown:
            raise ValueError(f"X has columns {unknown} that are not inputs of this model, "
                             f"{self._features}; list them all up front with features=[...]")
        return X.reindex(columns=self._features, fill_value=0.0).to_numpy(dtype=self.dtype)


class _RiverClassifier(_RiverMLP):
    """A River classifier trained online: one exact gradient step per ``learn_one``.

    ``classes`` lists every label the stream will have: they fix the network's
    outputs (one logistic output for two classes, whose ``classes[1]``
    probability it is; otherwise one per class, logistic with ``loss="sse"``,
    softmax with ``loss="cross_entropy"``). An unknown label is an error.

    Parameters
    ----------
    classes
        Every label, e.g. ``[False, True]``.
    features
        The input features, in order; None takes the sorted keys of the first ``x``.
    hidden
        Units of each hidden layer; ``()`` for none.
    activation, lr, bias, init, seed, dtype
        As :class:`~streammlp.MLP`.
    loss
        ``sse`` or ``cross_entropy``.

    Examples
    --------
    >>> import pytest; _ = pytest.importorskip("river")
    >>> from river import datasets, evaluate, metrics, preprocessing
    >>> from streammlp.adapters import RiverMLPClassifier
    >>> model = preprocessing.StandardScaler() | RiverMLPClassifier([False, True], seed=0)
    >>> accuracy = metrics.Accuracy()
    >>> evaluate.progressive_val_score(datasets.Phishing(), model, accuracy)  # doctest: +ELLIPSIS
    Accuracy: 8...%
    >>> model.predict_one({"empty_server_form_handler": 1.0, "popup_window": 0.5})
    False
    """

    def __init__(self, classes: list, features: list | None = None,
                 hidden: tuple[int, ...] = (32,), activation: str = "tanh",
                 loss: str = "cross_entropy", lr: float = 0.1, bias: bool = True,
                 init: str = "glorot", seed: int | None = None, dtype: str = "float64") -> None:
        self.classes, self.features = classes, features
        self.hidden, self.activation, self.loss = hidden, activation, loss
        self.lr, self.bias, self.init, self.seed, self.dtype = lr, bias, init, seed, dtype
        self._index = _class_index(classes)
        self._labels = list(self._index)

    def _n_outputs(self) -> int:
        return 1 if len(self._labels) == 2 else len(self._labels)

    def _output(self) -> str:
        return _output_loss(len(self._labels), self.loss)[0]

    def _loss(self) -> str:
        return _output_loss(len(self._labels), self.loss)[1]

    @property
    def _multiclass(self) -> bool:
        return True

    def learn_one(self, x: dict, y: Hashable) -> None:
        """One gradient step on ``x`` with label ``y``."""
        row = self._row(x)  # first: on the first call it makes the network and ``_t``
        try:
            i = self._index[y]
        except KeyError:
            raise _unknown(self._index, y) from None
        t = self._t[0]
        if len(t) == 1:
            t[0] = i
        else:
            t[:] = 0.0
            t[i] = 1.0
        self.net.learn_checked(row, self._t)

    def predict_proba_one(self, x: dict) -> dict[Hashable, float]:
        """``{label: probability}``, from the outputs as ``OnlineMLPClassifier.predict_proba``."""
        row = self._row(x)  # first: on the first call it makes the network
        p = _probabilities(self.net.predict(row))[0]
        return dict(zip(self._labels, p.tolist()))

    def predict_one(self, x: dict) -> Hashable:
        """The label :meth:`MLP.predict_class` picks: output >= 0.5 for two classes, else argmax."""
        row = self._row(x)  # first: on the first call it makes the network
        return self._labels[int(classify(self.net.predict(row))[0])]

    def learn_many(self, X, y) -> None:
        """One gradient step per row of the DataFrame ``X``, in order; ``y``: a Series of labels."""
        if len(X):
            labels, rows = _encode(self._index, list(y)), self._rows(X)
            self.net.learn(rows, _class_targets(labels, len(self._labels)))

    def predict_proba_many(self, X):
        """A DataFrame of probabilities, one column per label."""
        pd = importlib.import_module("pandas")
        rows = self._rows(X)
        p = _probabilities(self.net.predict(rows))
        return pd.DataFrame(p, columns=self._labels, index=X.index)


class _RiverRegressor(_RiverMLP):
    """A River regressor trained online: one exact gradient step per ``learn_one`` (SSE).

    Parameters
    ----------
    features
        The input features, in order; None takes the sorted keys of the first ``x``.
    hidden
        Units of each hidden layer; ``()`` for none.
    output
        ``identity`` (any real target) or ``logistic`` (targets in [0, 1]).
    activation, lr, bias, init, seed, dtype
        As :class:`~streammlp.MLP`.

    Examples
    --------
    >>> import pytest; _ = pytest.importorskip("river")
    >>> import random
    >>> from streammlp.adapters import RiverMLPRegressor
    >>> model, rng = RiverMLPRegressor(hidden=(8,), lr=0.05, seed=0), random.Random(1)
    >>> for _ in range(20000):
    ...     x = {"a": rng.uniform(-1, 1), "b": rng.uniform(-1, 1)}
    ...     model.learn_one(x, x["a"] * x["b"])
    >>> abs(model.predict_one({"a": 0.5, "b": 0.5}) - 0.25) < 0.1
    True
    """

    def __init__(self, features: list | None = None, hidden: tuple[int, ...] = (32,),
                 activation: str = "tanh", output: str = "identity", lr: float = 0.01,
                 bias: bool = True, init: str = "glorot", seed: int | None = None,
                 dtype: str = "float64") -> None:
        self.features = features
        self.hidden, self.activation, self.output, self.lr = hidden, activation, output, lr
        self.bias, self.init, self.seed, self.dtype = bias, init, seed, dtype

    def _n_outputs(self) -> int:
        return 1

    def _output(self) -> str:
        return self.output

    def _loss(self) -> str:
        return "sse"

    def learn_one(self, x: dict, y: float) -> None:
        """One gradient step on ``x`` towards the target ``y``."""
        row = self._row(x)
        try:
            self._t[0, 0] = y
        except (TypeError, ValueError):
            raise ValueError(f"y={y!r}; expected a real number") from None
        if not math.isfinite(self._t[0, 0]):
            raise ValueError(f"y={y!r}; expected a finite number")
        self.net.learn_checked(row, self._t)

    def predict_one(self, x: dict) -> float:
        """The network's output for ``x``."""
        row = self._row(x)
        return float(self.net.predict(row)[0, 0])

    def learn_many(self, X, y) -> None:
        """One gradient step per row of the DataFrame ``X``, in order; ``y``: a Series of values."""
        if len(X):
            rows = self._rows(X)
            self.net.learn(rows, np.asarray(y, dtype=np.float64))

    def predict_many(self, X):
        """A Series of the outputs, one per row."""
        pd = importlib.import_module("pandas")
        rows = self._rows(X)
        return pd.Series(self.net.predict(rows)[:, 0].astype(np.float64), index=X.index)
