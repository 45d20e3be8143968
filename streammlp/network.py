"""The multilayer perceptron: parameters in one buffer, trained one sample at a time."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Sequence

import numpy as np

from . import checkpoint, kernels

if TYPE_CHECKING:
    from .race import Race

ACTIVATIONS = {"identity": kernels.IDENTITY, "logistic": kernels.LOGISTIC,
               "tanh": kernels.TANH, "relu": kernels.RELU}
OUTPUTS = {"logistic": kernels.LOGISTIC, "identity": kernels.IDENTITY, "softmax": kernels.SOFTMAX}
LOSSES = {"sse": kernels.SSE, "cross_entropy": kernels.CROSS_ENTROPY}
# (output, loss) pairs whose gradient the kernels implement.
PAIRS = {("logistic", "sse"), ("identity", "sse"), ("softmax", "cross_entropy"),
         ("logistic", "cross_entropy")}
INITS = ("uniform", "glorot")
DTYPES = ("float64", "float32")
SCALES = ("standard",)
SCALE_LIMIT = kernels.SCALE_LIMIT  # the largest |input| with scale="standard" (see kernels)


class InputError(ValueError):
    """Input a network cannot learn from; ``reason`` names the kind, for counting rejections."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class Prequential:
    """Test-then-train figures of one batch, from each row's forward pass before its update.

    ``loss`` is the objective the gradient descends: ½·ΣFE² for ``sse``,
    −ΣT·log p for cross-entropy. ``sse`` is ΣFE² whatever the loss.

    Not frozen: a frozen dataclass sets each field through
    ``object.__setattr__``, which cost a call of one row more than its training.
    """

    n: int
    sse: float
    loss: float
    correct: int
    sample_loss: np.ndarray  # (n,) loss of each row
    predicted: np.ndarray  # (n,) class predicted for each row
    actual: np.ndarray  # (n,) class of each row's target
    # A one-row result's records as numbers (loss, predicted, actual), its arrays unset until
    # first read (see __getattr__): making three arrays cost such a call more than its training.
    # Not a field: the results of batches have none.
    _row: ClassVar[tuple | None] = None

    @property
    def accuracy(self) -> float:
        return self.correct / self.n

    def __getattr__(self, name: str) -> np.ndarray:
        """A one-row result's records, made when first read (called for unset fields only)."""
        if name not in ("sample_loss", "predicted", "actual") or self._row is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        loss, predicted, actual = self._row
        self.sample_loss = np.array([loss])
        self.predicted = np.array([predicted], dtype=np.int64)
        self.actual = np.array([actual], dtype=np.int64)
        return getattr(self, name)


def initialise(weights: Sequence[np.ndarray], init: str, seed: int | None) -> None:
    """Draw the layers' ``weights`` in place from ``seed``: uniform in [-1, 1] (``uniform``,
    the seed's) or in Glorot's range (``glorot``), layer after layer from one generator."""
    rng = np.random.default_rng(seed)
    for W in weights:
        limit = 1.0 if init == "uniform" else np.sqrt(6.0 / (W.shape[0] + W.shape[1]))
        W[...] = rng.uniform(-limit, limit, W.shape)


class _Scalar:
    """A number a net keeps in its ``_scalars`` (see ``kernels.SCALARS``), where its learn
    kernel reads and updates it; read and set as an attribute of the net."""

    def __init__(self, index: int, kind: type) -> None:
        self.index, self.kind = index, kind

    def __get__(self, net: "MLP | None", owner: type | None = None):
        return self if net is None else self.kind(net._scalars[self.index])

    def __set__(self, net: "MLP", value: float) -> None:
        net._scalars[self.index] = value


class MLP:
    """A multilayer perceptron trained online: one exact gradient step per sample, in order.

    Parameters
    ----------
    layers
        Units per layer, inputs first: ``[3, 4, 1]`` is the seed's 3-4-1 network.
    activation
        Hidden activation f_A: ``logistic`` (the seed's), ``tanh``, ``relu`` or ``identity``.
    output
        Output activation: ``logistic``, ``identity`` or ``softmax``.
    loss
        ``sse`` (½ summed squared error, the seed's) or ``cross_entropy``
        (with ``softmax``, or ``logistic`` outputs).
    lr
        Learning rate: ``weight -= lr * gradient`` after every sample.
    bias
        Give every non-input unit a bias (a weight on a constant 1). With
        ``bias=False`` the biases stay zero and are never updated.
    init
        ``uniform`` in [-1, 1] (the seed's) or ``glorot`` (uniform, scaled by
        fan-in and fan-out, better for deep or wide nets). Biases start at zero.
    seed
        Seed of the initial weights; the same seed gives the same network.
    dtype
        ``float64`` (default) or ``float32``.
    scale
        ``None`` (default: inputs as given, the seed's network) or ``standard``:
        each input feature is standardised online, ``(x - mean) / sqrt(var)``
        with the running mean and variance of the samples *before* it (so the
        prequential figures stay honest), 0 while its variance is 0. The
        statistics are part of the model: ``scaler_mean``, ``scaler_var``,
        ``scaler_count``; ``predict`` applies them, ``save`` keeps them.

    Examples
    --------
    >>> import numpy as np
    >>> net = MLP([3, 4, 1], lr=1.0, bias=False, seed=0)
    >>> net
    MLP([3, 4, 1], activation='logistic', output='logistic', loss='sse', lr=1.0, bias=False, dtype='float64')
    >>> X = np.random.default_rng(1).uniform(-1, 1, (2000, 3))
    >>> result = net.learn(X, (X[:, 0] >= 0).astype(float))
    >>> result.n, result.accuracy > 0.9
    (2000, True)
    >>> net.predict_class([[0.5, 0.1, -0.3], [-0.5, 0.2, 0.9]])
    array([1, 0])

    Inputs on wildly different scales, standardised inside the model:

    >>> scaled = MLP([3, 4, 1], lr=1.0, seed=0, scale="standard")
    >>> _ = scaled.learn(X * [1e-3, 1.0, 1e5], (X[:, 0] >= 0).astype(float))
    >>> scaled.scaler_count, scaled.scaler_mean.shape
    (2000, (3,))
    """

    # Whether every non-input unit has a bias, the running prequential totals over everything
    # learned so far, and the rows the input scaler has seen (0 without ``scale``).
    bias = _Scalar(kernels.BIAS, bool)
    samples = _Scalar(kernels.SAMPLES, int)
    sse_total = _Scalar(kernels.SSE_TOTAL, float)
    loss_total = _Scalar(kernels.LOSS_TOTAL, float)
    correct_total = _Scalar(kernels.CORRECT_TOTAL, int)
    scaler_count = _Scalar(kernels.COUNT, int)

    def __init__(self, layers: Sequence[int], activation: str = "logistic", output: str = "logistic",
                 loss: str = "sse", lr: float = 0.1, bias: bool = True, init: str = "uniform",
                 seed: int | None = None, dtype: str = "float64", scale: str | None = None) -> None:
        sizes = [int(n) for n in layers]
        if len(sizes) < 2 or min(sizes) < 1:
            raise ValueError(f"layers={list(layers)}; expected at least two positive sizes, "
                             "inputs first, e.g. [3, 4, 1]")
        _choose("activation", activation, ACTIVATIONS)
        _choose("output", output, OUTPUTS)
        _choose("loss", loss, LOSSES)
        if (output, loss) not in PAIRS:
            raise ValueError(f"output={output!r} with loss={loss!r} is not supported; use one of "
                             f"{sorted(PAIRS)}")
        if output == "softmax" and sizes[-1] < 2:
            raise ValueError("softmax needs at least 2 outputs; use output='logistic' for one")
        _choose("init", init, INITS)
        _choose("dtype", dtype, DTYPES)
        _choose("scale", scale, (None,) + SCALES)
        self.layers = sizes
        self.activation, self.output, self.loss = activation, output, loss
        self._scalars = np.zeros(kernels.SCALARS)  # what the learn kernel reads (see there)
        self._scalars[[kernels.INPUTS, kernels.OUTPUTS]] = sizes[0], sizes[-1]
        self.bias, self.init, self.seed, self.dtype = bias, init, seed, dtype
        self.scale = scale
        self.lr = lr

        # One parameter buffer [W_0, b_0, W_1, b_1, ...]; weights and biases are views into it.
        self.params = _aligned_zeros(sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:])), dtype)
        self.weights, self.biases, at = [], [], 0
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            self.weights.append(self.params[at:at + n_in * n_out].reshape(n_in, n_out))
            at += n_in * n_out
            self.biases.append(self.params[at:at + n_out])
            at += n_out
        initialise(self.weights, init, seed)
        # What the kernels take: tuples of the views, work buffers with a row per layer.
        self._Ws, self._bs = tuple(self.weights), tuple(self.biases)
        self._work = _aligned_zeros(3 * len(sizes) * max(sizes), dtype).reshape(
            3, len(sizes), max(sizes))  # s_pre, s_post, delta
        self._s_pre, self._s_post = self._work[0], self._work[1]  # what predict takes
        # The input scaler: rows 0 and 1 hold the running mean and the sum of squared
        # deviations (Welford) of each input, in float64; (2, 0) when not scaling.
        self._scaler = np.zeros((2, sizes[0] if scale else 0))
        # The dtype of 1-D targets that go to the kernel as they are: the net's, with one output.
        # (``learn`` compares dtypes with ``is``: an array of float64 has NumPy's one float64
        # dtype object, unless it was unpickled; then it takes the checks, right but slower.)
        self._flat_dtype = self.params.dtype if sizes[-1] == 1 else None
        # Where a call of one row has its records written (see Prequential._row).
        self._row_records = np.empty((3, 1), dtype=np.int64)
        # The learn kernel's arguments before the batch's: the one-hidden-layer kernel takes the
        # parameter buffer, the others the views.
        self._state = ((self.params,) if len(sizes) == 3 else (self._Ws, self._bs)) + (
            self._scalars, self._scaler, self._work)
        self._predict = kernels.predictor(ACTIVATIONS[activation], OUTPUTS[output],
                                          scale is not None, dtype)

    def __repr__(self) -> str:
        return (f"MLP({self.layers}, activation={self.activation!r}, output={self.output!r}, "
                f"loss={self.loss!r}, lr={self.lr}, bias={self.bias}, dtype={self.dtype!r}"
                + (f", scale={self.scale!r})" if self.scale else ")"))

    @property
    def n_inputs(self) -> int:
        return self.layers[0]

    @property
    def n_outputs(self) -> int:
        return self.layers[-1]

    @property
    def scaler_mean(self) -> np.ndarray | None:
        """Running mean of each input (float64, ``(inputs,)``); ``None`` without ``scale``."""
        return self._scaler[0] if self.scale else None

    @property
    def scaler_var(self) -> np.ndarray | None:
        """Running (population) variance of each input; ``None`` without ``scale``.

        Inputs are scaled as ``(x - scaler_mean) / sqrt(scaler_var)``, 0 where
        ``scaler_var`` is 0: subscribers apply the same transform.
        """
        if not self.scale:
            return None
        return self._scaler[1] / self.scaler_count if self.scaler_count else np.zeros(self.n_inputs)

    @property
    def lr(self) -> float:
        """The learning rate; a new one applies from the next row learned."""
        return self._lr_value

    @lr.setter
    def lr(self, lr: float) -> None:
        if not np.isfinite(lr) or lr <= 0:
            raise ValueError(f"lr={lr}; expected a finite positive learning rate")
        self._lr_value = float(lr)
        self._lr = np.dtype(self.dtype).type(lr)  # as the fleet's kernel takes it, made once
        self._scalars[kernels.LR] = lr

    def spec(self) -> dict:
        """The constructor arguments, enough to rebuild the same architecture."""
        return dict(layers=self.layers, activation=self.activation, output=self.output,
                    loss=self.loss, lr=self.lr, bias=self.bias, init=self.init, seed=self.seed,
                    dtype=self.dtype, scale=self.scale)

    # -- training and prediction -------------------------------------------------------------

    @functools.cached_property
    def _learn(self):
        """The learn kernel, compiled (or loaded from the disk cache) on first use: a race's
        members and a fleet's template net never learn alone."""
        return kernels.learner(ACTIVATIONS[self.activation], OUTPUTS[self.output],
                               LOSSES[self.loss], self.scale is not None, len(self.layers),
                               self.layers[-1] == 1, self.dtype)

    def learn(self, X, y) -> Prequential:
        """Train on the rows of ``X`` strictly in order, one gradient step per row.

        ``y`` is ``(n,)`` or ``(n, outputs)`` targets, or integer class labels
        (one-hot targets) for a net with several outputs. Everything is checked
        before the first update: bad input raises ``ValueError`` and leaves the
        model unchanged. Returns the batch's prequential figures.
        """
        # Arrays as the kernel takes them go straight to it: its dispatcher checks their types,
        # and the kernel their shapes and values, in one compiled pass before any update. On a
        # call of a few rows, that costs less than NumPy's checks. Anything else is checked and
        # converted here first.
        # (Numba's dispatcher does not tell byte orders apart: hence the check of X's dtype.)
        if type(X) is np.ndarray and type(y) is np.ndarray and X.dtype is self.params.dtype:
            if y.dtype is self._flat_dtype and y.ndim == 1:
                flat = y  # as the kernel takes targets: it checks their number and values
            else:
                flat = _flat_targets(y, self.layers[-1], self.params.dtype)
            if flat is not None:
                try:
                    result = self._train(X, flat)
                except TypeError:  # not the arrays the kernel was compiled for
                    result = None
                if result is not None:
                    return result
        X = self.check_inputs(X)  # bad input raises here, with what is wrong
        return self.learn_checked(X, self.check_targets(y, len(X)))

    def learn_checked(self, X: np.ndarray, Y: np.ndarray) -> Prequential:
        """:meth:`learn` for arrays that :meth:`check_inputs` and :meth:`check_targets` returned."""
        result = self._train(X, Y.reshape(-1))
        if result is None:  # never: the checks and the kernel agree
            raise RuntimeError("the kernel refused a batch that check_inputs and check_targets "
                               "accepted; please report this")
        return result

    def _train(self, X: np.ndarray, y: np.ndarray) -> Prequential | None:
        """Run the kernel on ``X`` and flat targets ``y``; None, with nothing changed, if it does
        not take them (see ``kernels.learner``)."""
        n = len(X)
        records = self._row_records if n == 1 else np.empty((3, n), dtype=np.int64)
        ok, sse, loss, correct, predicted, actual = self._learn(*self._state, X, y, records)
        if not ok:
            return None
        if n == 1:  # the records as numbers (see Prequential._row)
            result = object.__new__(Prequential)
            result.n, result.sse, result.loss, result.correct = 1, sse, loss, correct
            result._row = (loss, predicted, actual)
            return result
        return Prequential(n, sse, loss, correct, records[0].view(np.float64), records[1],
                           records[2])

    def mark(self) -> tuple:
        """What learning changes (parameters, scaler, counters), for :meth:`rewind`: a
        service's undo of a batch, cheaper than :meth:`state`."""
        return (self.params.copy(), self._scaler.copy(), self.scaler_count, self.samples,
                self.sse_total, self.loss_total, self.correct_total)

    def rewind(self, mark: tuple) -> None:
        """Undo everything learned since ``mark`` (a :meth:`mark`), in place: the weights
        and biases stay the same arrays."""
        (params, scaler, self.scaler_count, self.samples, self.sse_total, self.loss_total,
         self.correct_total) = mark
        self.params[...], self._scaler[...] = params, scaler

    def diverged(self) -> bool:
        """Whether a weight or bias is NaN or infinite: training has blown up."""
        return not np.isfinite(self.params).all()

    def _add(self, n: int, sse: float, loss: float, correct: int) -> None:
        """Count a batch of ``n`` rows learned elsewhere (by a race) in the running totals, as
        :meth:`learn`'s kernel counts its own (and the scaler's rows)."""
        kernels.count(self._scalars, n, sse, loss, correct, self.scale is not None)

    def predict(self, X) -> np.ndarray:
        """Outputs S_postA,O of every row, shape ``(n, outputs)``; no training."""
        X = self.check_inputs(X)
        out = np.empty((len(X), self.n_outputs), dtype=self.params.dtype)
        self._predict(self._Ws, self._bs, self.bias, X, self._scaler, self.scaler_count,
                      self._s_pre, self._s_post, out)
        return out

    def predict_class(self, X) -> np.ndarray:
        """Class of every row: output ≥ 0.5 for one output (the seed's rule), argmax for several."""
        return classify(self.predict(X))

    # -- input checks: everything is validated before any update --------------------------------

    def check_inputs(self, X) -> np.ndarray:
        """``X`` as a C-contiguous ``(n, inputs)`` array of this net's dtype, or ``ValueError``."""
        X = _as_numeric("X", X)
        if X.ndim != 2:
            raise InputError("shape", f"X has shape {X.shape}; expected (n, {self.n_inputs}) rows "
                             "(one sample: X.reshape(1, -1))")
        if X.shape[0] == 0:
            raise InputError("empty", "X is an empty batch; send at least one row")
        if X.shape[1] != self.n_inputs:
            raise InputError("shape", f"X has {X.shape[1]} columns; this network takes {self.n_inputs}")
        X = _kernel_ready(X, self.params.dtype)
        _check_finite("X", X)
        if self.scale:
            _check_scalable(X)
        return X

    def check_targets(self, y, n: int) -> np.ndarray:
        """Targets as an ``(n, outputs)`` array of this net's dtype, or ``ValueError``."""
        y = _as_numeric("y", y)
        k = self.n_outputs
        if y.shape[:1] != (n,):
            raise InputError("shape", f"y has shape {y.shape} for {n} rows of X; expected {n} targets")
        if y.ndim == 1 and k > 1:
            if not np.issubdtype(y.dtype, np.integer):
                raise InputError("shape", f"y is 1-D {y.dtype} but the network has {k} outputs; pass "
                                 f"integer class labels 0..{k - 1} or an ({n}, {k}) array")
            Y = np.zeros((n, k), dtype=self.params.dtype)
            # A writeable C copy, as one_hot was compiled for; a wrapped uint64 is < 0.
            i = kernels.one_hot(np.array(y, dtype=np.int64), Y)
            if i >= 0:
                raise InputError("label", f"label {y[i]} at row {i} is out of range; this network has "
                                 f"{k} classes, 0..{k - 1}")
            return Y
        if y.ndim == 1:
            y = y.reshape(n, 1)
        if y.ndim != 2 or y.shape[1] != k:
            raise InputError("shape", f"y has shape {y.shape}; expected ({n},) or ({n}, {k}) for a network "
                             f"with {k} output{'s' if k > 1 else ''}")
        Y = _kernel_ready(y, self.params.dtype)
        _check_finite("y", Y)
        return Y

    def check_many(self, messages: list[tuple[np.ndarray, np.ndarray]]
                   ) -> tuple[np.ndarray | None, np.ndarray | None, dict[int, InputError]]:
        """Check several ``(x, y)`` messages: the rows of the good ones, in order, and each bad one's error.

        The verdicts are those of :meth:`check_inputs` and :meth:`check_targets`
        message by message, but a stream of small messages is checked fast: when
        every message has the same dtypes and dimensions and as many targets as
        rows, all rows are checked in one pass (every check is per row once that
        holds); only if that fails is each message checked alone.
        """
        x0, y0 = messages[0]
        uniform = len(messages) > 1 and all(
            x.dtype == x0.dtype and y.dtype == y0.dtype and x.ndim == 2 and y.ndim == y0.ndim
            and 0 < len(x) == len(y) for x, y in messages)
        if uniform:
            try:
                X = self.check_inputs(np.concatenate([x for x, _ in messages]))
                return X, self.check_targets(np.concatenate([y for _, y in messages]), len(X)), {}
            except ValueError:  # a bad message (or unequal widths): find it below
                pass
        xs, ys, errors = [], [], {}
        for i, (x, y) in enumerate(messages):
            try:
                x = self.check_inputs(x)
                ys.append(self.check_targets(y, len(x)))
                xs.append(x)
            except InputError as e:
                errors[i] = e
        if not xs:
            return None, None, errors
        return (xs[0], ys[0], errors) if len(xs) == 1 else (np.concatenate(xs), np.concatenate(ys), errors)

    # -- persistence ----------------------------------------------------------------------------

    def state(self) -> dict:
        """Everything needed to continue exactly: spec, parameters, scaler and counters."""
        state = dict(spec=self.spec(), params=self.params.copy(), samples=self.samples,
                     sse_total=self.sse_total, loss_total=self.loss_total,
                     correct_total=self.correct_total)
        if self.scale:
            state.update(scaler=self._scaler.copy(), scaler_count=self.scaler_count)
        return state

    @classmethod
    def from_state(cls, state: dict) -> "MLP":
        """Rebuild a network from :meth:`state`, checking that the parameters fit the spec."""
        net = cls(**state["spec"])
        params = np.asarray(state["params"])
        if params.shape != net.params.shape or params.dtype != net.params.dtype:
            raise ValueError(f"parameters of shape {params.shape} and dtype {params.dtype} do not "
                             f"fit {net!r}, which needs {net.params.shape} {net.params.dtype}")
        net.params[...] = params
        if net.scale:
            scaler = np.asarray(state["scaler"])
            if scaler.shape != net._scaler.shape:
                raise ValueError(f"scaler of shape {scaler.shape} does not fit {net!r}, which "
                                 f"needs {net._scaler.shape} (mean and squared deviations per input)")
            net._scaler[...] = scaler
            net.scaler_count = int(state["scaler_count"])
        net.samples = int(state["samples"])
        net.sse_total = float(state["sse_total"])
        net.loss_total = float(state["loss_total"])
        net.correct_total = int(state["correct_total"])
        return net

    # copy.deepcopy and pickle go through the state, so the copy's views share its own buffer.
    def __getstate__(self) -> dict:
        return self.state()

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(MLP.from_state(state).__dict__)

    def save(self, path: str | os.PathLike, extra: dict | None = None) -> None:
        """Write the network (and ``extra``, any JSON-able dict) to an ``.npz`` file.

        Atomic: a temporary file is written and fsynced, then renamed over ``path``,
        so a crash leaves either the old file or the new one, never half of one.
        """
        checkpoint.write(path, self.state(), extra)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "MLP":
        """Read a network written by :meth:`save`."""
        net = read(path)[0]
        if not isinstance(net, MLP):
            raise ValueError(f"{os.fspath(path)} holds a {type(net).__name__}, not one network; "
                             f"read it with {type(net).__name__}.load")
        return net


def classify(outputs: np.ndarray) -> np.ndarray:
    """Class of each row of ``(n, outputs)`` outputs: ≥ 0.5 for one output (the seed's rule),
    argmax for several. The kernels' ``_classify`` is the same rule inside the training loop."""
    if outputs.shape[1] == 1:
        return (outputs[:, 0] >= 0.5).astype(np.int64)
    return outputs.argmax(axis=1)


def read(path: str | os.PathLike) -> tuple[MLP | Race, dict]:
    """The model written to ``path`` (an :class:`MLP`, or a :class:`~streammlp.race.Race`) and
    the ``extra`` saved with it; ``ValueError`` if the file is not one."""
    try:
        state = checkpoint.read(path)
        if state.get("kind") == "race":
            from .race import Race  # race.py builds on this module
            return Race.from_state(state), state.get("extra", {})
        return MLP.from_state(state), state.get("extra", {})
    except (OSError, ValueError, KeyError, IndexError, TypeError) as e:
        raise ValueError(f"{os.fspath(path)} is not a streammlp network file: {e}") from e


def _choose(name: str, value: str, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r}; expected one of {', '.join(map(repr, allowed))}")


def _as_numeric(name: str, a) -> np.ndarray:
    try:
        a = np.asarray(a)
    except ValueError as e:  # ragged nested lists
        raise InputError("shape", f"{name} is not a rectangular array: {e}") from None
    if a.dtype.kind not in "biuf":
        raise InputError("dtype", f"{name} has dtype {a.dtype}; expected real numbers (bool, int or float)")
    return a


def _aligned_zeros(n: int, dtype: str) -> np.ndarray:
    """``n`` zeros of ``dtype`` from an address that is a multiple of 64, a cache line: NumPy
    gives 16, and a 64-128-10 net whose weights started mid-line learned 10-15 % slower (its
    rows of 512-bit loads and stores each crossed a line)."""
    itemsize = np.dtype(dtype).itemsize
    raw = np.zeros(n + 64 // itemsize, dtype=dtype)
    start = (-raw.ctypes.data % 64) // itemsize
    return raw[start:start + n]


def _kernel_ready(a: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``a`` as a writable C-contiguous array of ``dtype``, as the compiled kernels were built for.

    A read-only array (``np.frombuffer`` over a received frame) is another type
    to Numba: passing one would compile ``predict``'s kernel again, a pause of
    seconds (the learn kernels refuse it, see ``kernels.learner``).
    """
    if a.dtype != dtype:
        with np.errstate(over="ignore"):  # a float64 beyond float32's range becomes inf: caught later
            a = a.astype(dtype, order="C")
    elif not a.flags.c_contiguous or not a.flags.writeable:
        a = a.copy(order="C")
    return a


def _flat_targets(y: np.ndarray, outputs: int, dtype: np.dtype) -> np.ndarray | None:
    """``y`` flat, as the kernels take targets, if it can be without a check: ``(n, outputs)``
    targets of ``dtype`` (the kernel checks ``n`` and the values), or int64 class labels for
    several outputs, made one-hot here; None for anything else."""
    if y.dtype is dtype:
        return y.reshape(-1) if y.ndim == 2 and y.shape[1] == outputs else None
    # carray: C order and writeable, as one_hot was compiled for (else it compiles again)
    if y.dtype == np.int64 and y.ndim == 1 and outputs > 1 and y.flags.carray:
        Y = np.zeros((len(y), outputs), dtype=dtype)
        return Y.reshape(-1) if kernels.one_hot(y, Y) < 0 else None
    return None


def _check_scalable(X: np.ndarray) -> None:
    """``InputError`` if a value of ``X`` is beyond ``SCALE_LIMIT`` (see there)."""
    if float(np.finfo(X.dtype).max) <= SCALE_LIMIT:  # float32 holds no such value
        return
    big = np.abs(X) > SCALE_LIMIT
    if big.any():
        i, j = np.unravel_index(np.argmax(big), X.shape)
        raise InputError("out_of_range", f"X has {X[i, j]:g} in row {i}, column {j}; with "
                         f"scale='standard' inputs must be within ±{SCALE_LIMIT:g} (the running "
                         "variance would overflow); rescale that feature")


def _check_finite(name: str, a: np.ndarray) -> None:
    if not np.isfinite(a).all():
        i = int(np.argmax(~np.isfinite(a).reshape(len(a), -1).all(axis=1)))
        raise InputError("non_finite", f"{name} has NaN or Inf in row {i}; clean or drop that row")
