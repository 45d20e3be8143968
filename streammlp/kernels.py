"""Numba kernels: the per-sample forward pass and backpropagation, a whole batch per call.

Only arrays and scalars go in; parameters are updated in place. Every check on
shapes, dtypes and values is done by the wrappers in ``network.py`` before a
kernel runs, so a kernel never fails half-way through a batch.

Arguments shared by the kernels:

- ``Ws``, ``bs``: tuples of the layers' weights ``W_l`` (shape ``(n_l, n_{l+1})``,
  row-major, so a row holds one input's weights to every unit of the next
  layer) and biases ``b_l`` (``(n_{l+1},)``), views into the network's one
  parameter buffer. Tuples, not lists: Numba unboxes them cheaply and compiles
  one specialisation per depth, so nothing is sliced per sample.
  Input-major rows make the two hot loops (the forward accumulation and the
  weight update) run over contiguous memory, which LLVM vectorises without
  ``fastmath``.
- ``s_pre``, ``s_post``, ``delta``: work buffers of shape ``(layers, widest)``;
  row ``l`` holds layer ``l``'s S_preA, S_postA and error signal (row 0 = the
  inputs). Allocated once per network, never per sample.
- ``hidden``, ``output``: activation codes below; ``use_bias``: add and train biases.

The rule is the seed's, layer by layer: for the output layer
``S_ERROR = FE * f_A'(S_preA,O)`` with ``FE = S_postA,O - T`` (squared error),
or ``S_ERROR = FE`` for softmax/logistic with cross-entropy; below it
``delta_l = f_A'(S_preA,l) * (W_l @ delta_{l+1})``, computed from ``W_l``
*before* this sample changes it; ``gradient_l = outer(S_postA,l, delta_{l+1})``
and ``W_l -= lr * gradient_l``.
"""

import functools

import numpy as np
from numba import njit

# Numba flags, in one place. fastmath stays off: the kernels must agree with
# the plain NumPy reference to 1e-12, and input-major rows vectorise anyway.
JIT = dict(cache=True, nogil=True, fastmath=False)

# Activation codes (hidden and output layers).
IDENTITY, LOGISTIC, TANH, RELU, SOFTMAX = 0, 1, 2, 3, 4
# Loss codes.
SSE, CROSS_ENTROPY = 0, 1


@njit(inline="always", **JIT)
def _activate(code, s_pre, s_post, l, n, one):
    """S_postA = f_A(S_preA) for the ``n`` units of row ``l`` (softmax over the row).

    ``one`` is 1 in the buffers' dtype: a float literal would turn float32 maths into float64.
    """
    if code == LOGISTIC:
        for k in range(n):
            s_post[l, k] = one / (one + np.exp(-s_pre[l, k]))
    elif code == TANH:
        for k in range(n):
            s_post[l, k] = np.tanh(s_pre[l, k])
    elif code == RELU:
        for k in range(n):
            s_post[l, k] = s_pre[l, k] if s_pre[l, k] > 0 else one - one
    elif code == SOFTMAX:
        top = s_pre[l, 0]
        for k in range(1, n):
            top = max(top, s_pre[l, k])
        total = one - one
        for k in range(n):
            s_post[l, k] = np.exp(s_pre[l, k] - top)
            total += s_post[l, k]
        for k in range(n):
            s_post[l, k] /= total
    else:
        for k in range(n):
            s_post[l, k] = s_pre[l, k]


@njit(inline="always", **JIT)
def _derivative(code, s_pre, s_post, one):
    """f_A'(S_preA) of one unit, from the values the forward pass already holds."""
    if code == LOGISTIC:
        return s_post * (one - s_post)
    if code == TANH:
        return one - s_post * s_post
    if code == RELU:
        return one if s_pre > 0 else one - one
    return one


@njit(inline="always", **JIT)
def _forward(Ws, bs, use_bias, hidden, output, X, n, s_pre, s_post, one):
    """Forward pass of row ``n`` of ``X``; fills rows 1.. of ``s_pre`` and ``s_post``."""
    n_layers = len(Ws)
    for k in range(X.shape[1]):
        s_post[0, k] = X[n, k]
    for l in range(n_layers):
        W, b = Ws[l], bs[l]
        for j in range(W.shape[1]):
            s_pre[l + 1, j] = b[j] if use_bias else one - one
        for i in range(W.shape[0]):
            a_i = s_post[l, i]
            for j in range(W.shape[1]):
                s_pre[l + 1, j] += a_i * W[i, j]
        _activate(output if l == n_layers - 1 else hidden, s_pre, s_post, l + 1, W.shape[1], one)


@njit(inline="always", **JIT)
def _output_error(output, loss, s_pre, s_post, delta, Y, n, top, one):
    """Set the output row ``top`` of ``delta`` to S_ERROR; return (ΣFE², loss) of row ``n``."""
    sse = 0.0
    value = 0.0
    n_out = Y.shape[1]
    for j in range(n_out):
        fe = s_post[top, j] - Y[n, j]  # FE = S_postA,O - T
        sse += fe * fe
        if loss == SSE:
            delta[top, j] = fe * _derivative(output, s_pre[top, j], s_post[top, j], one)
        else:
            delta[top, j] = fe  # softmax or logistic with cross-entropy: f' cancels
    if loss == SSE:
        value = 0.5 * sse
    elif output == SOFTMAX:
        # -Σ T log p, with log p = S_preA - logsumexp(S_preA), which never takes log(0)
        best = s_pre[top, 0]
        for j in range(1, n_out):
            best = max(best, s_pre[top, j])
        total = 0.0
        for j in range(n_out):
            total += np.exp(s_pre[top, j] - best)
        lse = best + np.log(total)
        for j in range(n_out):
            value -= Y[n, j] * (s_pre[top, j] - lse)
    else:
        # binary cross-entropy per output, as softplus(z) - T z
        for j in range(n_out):
            z = s_pre[top, j]
            value += max(z, 0.0) + np.log1p(np.exp(-abs(z))) - Y[n, j] * z
    return sse, value


@njit(inline="always", **JIT)
def _classify(v, row, n):
    """Class of an output or target row: threshold 0.5 for one unit, argmax for several."""
    if n == 1:
        return 1 if v[row, 0] >= 0.5 else 0
    best = 0
    for j in range(1, n):
        if v[row, j] > v[row, best]:
            best = j
    return best


@functools.cache
def learner(hidden: int, output: int, loss: int, dtype: str):
    """The ``learn`` kernel for these activation and loss codes.

    The codes are constants of each specialisation, so LLVM drops the branches
    on them from the per-sample loop (about 25 % faster on small nets), and so
    is the scalar type, so float32 maths stays float32. Each is compiled on
    first use and cached on disk like any ``cache=True`` function.
    """
    real = np.dtype(dtype).type

    @njit(**JIT)
    def learn(Ws, bs, use_bias, lr, X, Y, s_pre, s_post, delta, sample_loss, predicted, actual):
        """Train on the rows of ``X`` in order, one gradient step per row.

        Before each step, records the prequential figures of that row's forward
        pass in ``sample_loss[n]``, ``predicted[n]`` and ``actual[n]`` (classes).
        Returns the batch's summed squared error (ΣFE² over rows and outputs).
        """
        one = real(1.0)
        top = len(Ws)  # row of the output layer in the work buffers
        n_out = Y.shape[1]
        sse_total = 0.0
        for n in range(X.shape[0]):
            _forward(Ws, bs, use_bias, hidden, output, X, n, s_pre, s_post, one)
            sse, value = _output_error(output, loss, s_pre, s_post, delta, Y, n, top, one)
            sse_total += sse
            sample_loss[n] = value
            predicted[n] = _classify(s_post, top, n_out)
            actual[n] = _classify(Y, n, n_out)

            # Backward, top layer first. One pass over each W_l both propagates
            # delta down (reading W_l before its update) and updates W_l.
            for l in range(top - 1, -1, -1):
                W, b = Ws[l], bs[l]
                for i in range(W.shape[0]):
                    if l > 0:
                        acc = one - one
                        for j in range(W.shape[1]):
                            acc += W[i, j] * delta[l + 1, j]
                        delta[l, i] = acc * _derivative(hidden, s_pre[l, i], s_post[l, i], one)
                    a_i = s_post[l, i]
                    for j in range(W.shape[1]):
                        W[i, j] -= lr * (delta[l + 1, j] * a_i)  # gradient = S_ERROR * S_postA
                if use_bias:
                    for j in range(W.shape[1]):
                        b[j] -= lr * delta[l + 1, j]
        return sse_total

    return learn


@functools.cache
def predictor(hidden: int, output: int, dtype: str):
    """The ``predict`` kernel for these activation codes and dtype (see :func:`learner`)."""
    real = np.dtype(dtype).type

    @njit(**JIT)
    def predict(Ws, bs, use_bias, X, s_pre, s_post, out):
        """Forward pass of every row of ``X`` into ``out`` (n, outputs); no update."""
        one = real(1.0)
        top = len(Ws)
        for n in range(X.shape[0]):
            _forward(Ws, bs, use_bias, hidden, output, X, n, s_pre, s_post, one)
            for j in range(out.shape[1]):
                out[n, j] = s_post[top, j]

    return predict


@njit(**JIT)
def ewma(values, mean, alpha):
    """The exponentially weighted mean after taking ``values`` in turn, from ``mean``.

    A NaN ``mean`` (nothing seen yet) starts from the first value.
    """
    for v in values:
        mean = v if mean != mean else mean + alpha * (v - mean)
    return mean
