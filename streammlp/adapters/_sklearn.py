"""The behaviour of ``OnlineMLPClassifier`` and ``OnlineMLPRegressor``, before scikit-learn's
base classes are mixed in (see ``streammlp.adapters``)."""

from __future__ import annotations

import numpy as np

from ..network import MLP, classify
from ._common import (_class_index, _class_targets, _encode, _hidden, _output_loss,
                      _probabilities)


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
