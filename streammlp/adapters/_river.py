"""The behaviour of ``RiverMLPClassifier`` and ``RiverMLPRegressor``, before River's base
classes are mixed in (see ``streammlp.adapters``)."""

from __future__ import annotations

import importlib
import math
from collections.abc import Hashable

import numpy as np

from ..network import MLP, classify
from ._common import (_class_index, _class_targets, _encode, _hidden, _output_loss,
                      _probabilities, _unknown)


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
            # Checked as stored: 1e39 is finite, but inf in a float32 buffer. A sum that
            # overflows is checked one by one below.
            finite = math.isfinite(sum(self._x[0].tolist()))
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
