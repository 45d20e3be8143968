"""Numba kernels: the per-sample forward pass and backpropagation, a whole batch per call.

Only arrays and scalars go in; parameters are updated in place. A kernel never
fails half-way through a batch: the ``learn`` kernels check their batch's
shapes and values before any update (and their dispatcher its types, see
:func:`learner`); the others are given checked arrays by their callers.

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
- ``scaler``, ``count``: the online input standardisation (``scale``): rows 0 and
  1 of ``scaler`` (float64, ``(2, inputs)``) hold the running mean and sum of
  squared deviations (Welford) of the ``count`` rows seen so far. Each row is
  scaled with the statistics of the rows *before* it, then added to them.
  Without scaling, ``scaler`` is a ``(2, 0)`` array, never read. The ``learn``
  kernels read ``count`` (and the learning rate and ``use_bias``) from the net's
  ``scalars`` (see ``SCALARS``).

Nets with one hidden layer (the seed's) are trained by
:func:`_learn_rows_one_hidden`, which takes the four arrays of its parameter
buffer by name; deeper or shallower ones by :func:`_learn_rows`, over the
tuples. Those two loops are where a sample is trained; they give the same bits.

:func:`racer` builds the race's kernel: several networks trained on the same
batch in one call, each exactly as alone; :func:`rank` then computes their
windowed figures and the leader.

The rule is the seed's, layer by layer: for the output layer
``S_ERROR = FE * f_A'(S_preA,O)`` with ``FE = S_postA,O - T`` (squared error),
or ``S_ERROR = FE`` for softmax/logistic with cross-entropy; below it
``delta_l = f_A'(S_preA,l) * (W_l @ delta_{l+1})``, computed from ``W_l``
*before* this sample changes it; ``gradient_l = outer(S_postA,l, delta_{l+1})``
and ``W_l -= lr * gradient_l``.
"""

import functools

import numba
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

# Numba flags, in one place. fastmath stays off: the kernels must agree with
# the plain NumPy reference to 1e-12, and input-major rows vectorise anyway.
JIT = dict(cache=True, nogil=True, fastmath=False)

# Activation codes (hidden and output layers).
IDENTITY, LOGISTIC, TANH, RELU, SOFTMAX = 0, 1, 2, 3, 4
# Loss codes.
SSE, CROSS_ENTROPY = 0, 1
# What ranks the members of a race: their windowed loss, or accuracy (then loss).
BY_LOSS, BY_ACCURACY = 0, 1
# Largest |input| a net with input scaling takes. Welford's sum of squared deviations grows
# by at most (2·limit)² a row, so it stays finite (float64) for 2**63 rows; beyond it one
# row could make it inf, and every later standardised value of that feature 0.
SCALE_LIMIT = 1e144
# A net's scalars, as its learn kernel reads and updates them, in one float64 array (counts are
# exact in it up to 2**53): Numba's dispatcher types and unboxes every argument of every call,
# an array in ~80 ns, a scalar in 80-200 ns, which made them most of what a call on one row
# cost. The learning rate, whether there are biases, the inputs and outputs, the rows the input
# scaler has seen, and the running prequential totals (see count).
LR, BIAS, INPUTS, OUTPUTS, COUNT, SAMPLES, SSE_TOTAL, LOSS_TOTAL, CORRECT_TOTAL = range(9)
SCALARS = 9
# Output layers of at most this many units sum their S_preA unit by unit, in a register;
# wider ones input by input over contiguous rows, which LLVM vectorises (same sums, same order).
UNIT_BY_UNIT = 4
# How many rows ahead a fleet's training asks for the next rows of its models, scattered over
# the batch, and the fleet kernel for the next rows' figures while it puts them in row order
# (a gather of 1M rows of 16 inputs: ~0.12 us a row without, ~0.05 with; 8 to 24 alike).
AHEAD = 16


@njit(**JIT)
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


@njit(**JIT)
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
def _inputs(scale, learning, X, n, scaler, count, out, row):
    """Row ``row`` of ``out`` = row ``n`` of ``X``, standardised with ``scale``.

    Standardised: ``(x - mean) / sqrt(var)`` with the mean and (population)
    variance of the ``count`` rows before it, 0 for a feature of variance 0
    (or no rows yet); then, when ``learning``, the row joins the statistics
    (Welford's update, in float64 whatever the network's dtype).
    """
    if scale:
        mean, m2 = scaler[0], scaler[1]
        # Reciprocals once per row: one division and one square root per feature.
        per_row = 1.0 / count if count > 0 else 0.0
        per_row_next = 1.0 / (count + 1)
        for k in range(X.shape[1]):
            x = np.float64(X[n, k])
            d = x - mean[k]
            var = m2[k] * per_row
            out[row, k] = d / np.sqrt(var) if var > 0.0 else 0.0
            if learning:
                mean[k] += d * per_row_next
                m2[k] += d * (x - mean[k])
    else:
        for k in range(X.shape[1]):
            out[row, k] = X[n, k]


@njit(inline="always", **JIT)
def _forward(Ws, bs, use_bias, hidden, output, s_pre, s_post, one):
    """Forward pass of the inputs in row 0 of ``s_post``; fills rows 1.. of ``s_pre`` and ``s_post``."""
    n_layers = len(Ws)
    for l in range(n_layers):
        W, b = Ws[l], bs[l]
        for j in range(W.shape[1]):
            s_pre[l + 1, j] = b[j] if use_bias else one - one
        for i in range(W.shape[0]):
            a_i = s_post[l, i]
            for j in range(W.shape[1]):
                s_pre[l + 1, j] += a_i * W[i, j]
        # Each call with its code a constant of the kernel: a code chosen at run time made a
        # call LLVM kept (a 3-1 net without scaling: 1.4x slower a row).
        if l < n_layers - 1:
            _activate(hidden, s_pre, s_post, l + 1, W.shape[1], one)
        else:
            _activate(output, s_pre, s_post, l + 1, W.shape[1], one)


@njit(inline="always", **JIT)
def _output_error(output, loss, s_pre, s_post, delta, Y, n, top, n_out, one):
    """Set the output row ``top`` of ``delta`` to S_ERROR; return (ΣFE², loss) of row ``n``."""
    sse = 0.0
    value = 0.0
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


@njit(inline="always", **JIT)
def _backward(Ws, bs, use_bias, hidden, lr, s_pre, s_post, delta, one):
    """Backpropagate S_ERROR (row ``len(Ws)`` of ``delta``) and update every layer, top first.

    One pass over each ``W_l`` both propagates delta down (reading ``W_l``
    before its update) and updates ``W_l``.
    """
    for l in range(len(Ws) - 1, -1, -1):
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


@njit(inline="always", **JIT)
def _at(index, n):
    """Where row ``n`` of a batch is in ``X`` and ``Y``: row ``n`` (``index`` None), or
    ``index[n]``."""
    if index is None:
        return n
    return index[n]


@njit(inline="always", **JIT)
def _ask_ahead(index, n, X, Y):
    """With ``index``, have the row ``AHEAD`` places on in ``index`` loaded into cache while
    this one trains: the rows are scattered over ``X`` and ``Y`` (a fleet's model's)."""
    if index is not None:
        ahead = index[min(n + AHEAD, len(index) - 1)]
        _prefetch_row(X, ahead)
        _prefetch_row(Y, ahead)


@njit(**JIT)
def _learn_rows(hidden, output, loss, scale, keep_sse, Ws, bs, use_bias, lr, X, Y, index, stop,
                scaler, count, s_pre, s_post, delta, sample_loss, sample_sse, predicted, actual,
                one):
    """Train one network on ``stop`` rows in order, one gradient step per row.

    Row ``n`` is row ``n`` of ``X`` and ``Y`` (``index`` None), or row ``index[n]``
    (a fleet's model, whose rows are scattered over the batch; ``index`` may go on past
    ``stop``). Before each step, records the prequential figures of that row's forward
    pass in ``sample_loss[n]``, ``predicted[n]`` and ``actual[n]`` (classes),
    and its ΣFE² in ``sample_sse[n]`` if ``keep_sse``. Returns the batch's ΣFE²
    over rows and outputs, summed loss and rows classified right (summed as
    they come: a pass over the records afterwards would read them back from
    memory on a large batch). ``scale`` is a constant in the single-network
    kernels, a per-member flag in the race's.
    """
    n_out = Y.shape[1]
    sse_total, loss_total, correct = 0.0, 0.0, 0
    for n in range(stop):
        _ask_ahead(index, n, X, Y)
        m = _at(index, n)
        _inputs(scale, True, X, m, scaler, count + n, s_post, 0)
        _forward(Ws, bs, use_bias, hidden, output, s_pre, s_post, one)
        sse, value = _output_error(output, loss, s_pre, s_post, delta, Y, m, len(Ws), n_out,
                                   one)
        sse_total += sse
        loss_total += value
        sample_loss[n] = value
        if keep_sse:
            sample_sse[n] = sse
        predicted[n] = _classify(s_post, len(Ws), n_out)
        actual[n] = _classify(Y, m, n_out)
        correct += predicted[n] == actual[n]
        _backward(Ws, bs, use_bias, hidden, lr, s_pre, s_post, delta, one)
    return sse_total, loss_total, correct


@njit(**JIT)
def _valid(X, Y, x_limit, y_limit):
    """Whether every input ``|x| <= x_limit`` and every target ``|y| <= y_limit`` (not NaN)."""
    for n in range(X.shape[0]):
        for k in range(X.shape[1]):
            if not abs(X[n, k]) <= x_limit:
                return False
        for k in range(Y.shape[1]):
            if not abs(Y[n, k]) <= y_limit:
                return False
    return True


@njit(inline="always", **JIT)
def _takes(scalars, X, y, x_limit, y_limit):
    """Whether a net with these ``scalars`` takes the batch ``X``, ``y``: at least one row of
    its inputs, its outputs' targets for each row (``y`` flat), and values within the limits
    (see :func:`_valid`). One pass in compiled code: cheaper than NumPy's checks on a few rows."""
    n, n_out = X.shape[0], int(scalars[OUTPUTS])
    if n == 0 or X.shape[1] != scalars[INPUTS] or y.size != n * n_out:
        return False
    return _valid(X, y.reshape((n, n_out)), x_limit, y_limit)


@njit(**JIT)
def _layers(params, n_in, n_out):
    """Views ``W1, b1, W2, b2`` of a one-hidden-layer net's parameter buffer ``[W1, b1, W2, b2]``.

    Its size ``n_in·h + h + h·n_out + n_out`` gives the hidden width ``h``.
    """
    h = (params.size - n_out) // (n_in + 1 + n_out)
    at = n_in * h
    W1 = params[:at].reshape((n_in, h))
    b1 = params[at:at + h]
    W2 = params[at + h:at + h + h * n_out].reshape((h, n_out))
    b2 = params[at + h + h * n_out:]
    return W1, b1, W2, b2


@njit(inline="always", **JIT)
def _row(scale, X, n, m, scaler, count, s_pre, s_post):
    """Where the kernels read the inputs of a batch's row ``n``, row ``m`` of ``X`` (see
    :func:`_at`): ``(array, row)``.

    Without scaling, ``X[m]`` itself. With it, that row standardised (see
    :func:`_inputs`) into row 0 of ``s_post`` for an even ``n`` and of
    ``s_pre`` (otherwise unused) for an odd one, so that the previous row stays
    readable while the next is prepared.
    """
    if not scale:
        return X, m
    out = s_post if n % 2 == 0 else s_pre
    _inputs(True, True, X, m, scaler, count + n, out, 0)
    return out, 0


@njit(inline="always", **JIT)  # a call would pass ~25 arguments: 0.15 µs of a one-row call
def _learn_rows_one_hidden(hidden, output, loss, scale, keep_sse, single_output, W1, b1, W2, b2,
                           use_bias, lr, X, Y, index, stop, scaler, count, s_pre, s_post, delta,
                           sample_loss, sample_sse, predicted, actual, one):
    """:func:`_learn_rows` written out for one hidden layer (the seed's nets): the same bits.

    With the two layers named, LLVM knows every loop's arrays and trip counts
    (3-4-1 ran ~1.8x as fast as through the general loop over layers, here).
    Few output sums stay in a register. And one pass over ``W1`` both updates
    it for row ``n`` and sums row ``n + 1``'s hidden S_preA with the updated
    weights, where the general loop takes two: each weight is read once per
    row instead of twice. The sums and updates are the same operations in the
    same order as in :func:`_learn_rows`, so the results are the same bits.
    """
    n_in, n_hid = W1.shape
    # A constant of the specialisation for one output: its loops compile away, and its S_preA,
    # S_postA and S_ERROR stay in registers (3-4-1 ~1.2x as fast in float64, ~1.4x in float32).
    n_out = 1 if single_output else W2.shape[1]
    sse_total, loss_total, correct = 0.0, 0.0, 0
    if stop == 0:
        return sse_total, loss_total, correct
    x, r = _row(scale, X, 0, _at(index, 0), scaler, count, s_pre, s_post)
    # Row 0's hidden sums; each later row's are made by the previous row's W1 pass.
    for j in range(n_hid):
        s_pre[1, j] = b1[j] if use_bias else one - one
    for i in range(n_in):
        a_i = x[r, i]
        for j in range(n_hid):
            s_pre[1, j] += a_i * W1[i, j]
    for n in range(stop):
        _ask_ahead(index, n, X, Y)
        m = _at(index, n)
        _activate(hidden, s_pre, s_post, 1, n_hid, one)
        if n_out <= UNIT_BY_UNIT:
            for k in range(n_out):
                acc = b2[k] if use_bias else one - one
                for j in range(n_hid):
                    acc += s_post[1, j] * W2[j, k]
                s_pre[2, k] = acc
        else:
            for k in range(n_out):
                s_pre[2, k] = b2[k] if use_bias else one - one
            for j in range(n_hid):
                a_j = s_post[1, j]
                for k in range(n_out):
                    s_pre[2, k] += a_j * W2[j, k]
        _activate(output, s_pre, s_post, 2, n_out, one)
        sse, value = _output_error(output, loss, s_pre, s_post, delta, Y, m, 2, n_out, one)
        sse_total += sse
        loss_total += value
        sample_loss[n] = value
        if keep_sse:
            sample_sse[n] = sse
        predicted[n] = _classify(s_post, 2, n_out)
        actual[n] = _classify(Y, m, n_out)
        correct += predicted[n] == actual[n]
        # Backward, as _backward: HtoO first, reading each weight before its update.
        for j in range(n_hid):
            acc = one - one
            for k in range(n_out):
                acc += W2[j, k] * delta[2, k]
            delta[1, j] = acc * _derivative(hidden, s_pre[1, j], s_post[1, j], one)
            a_j = s_post[1, j]
            for k in range(n_out):
                W2[j, k] -= lr * (delta[2, k] * a_j)  # gradient_HtoO = S_ERROR * S_postA,H
        if use_bias:
            for k in range(n_out):
                b2[k] -= lr * delta[2, k]
            for j in range(n_hid):
                b1[j] -= lr * delta[1, j]
        if n + 1 == stop:  # the last row: update W1 alone
            for i in range(n_in):
                a_i = x[r, i]
                for j in range(n_hid):
                    W1[i, j] -= lr * (delta[1, j] * a_i)  # gradient_ItoH
            break
        # Update W1 for this row and sum the next row's hidden S_preA in the same pass.
        x_next, r_next = _row(scale, X, n + 1, _at(index, n + 1), scaler, count, s_pre, s_post)
        for j in range(n_hid):
            s_pre[1, j] = b1[j] if use_bias else one - one
        for i in range(n_in):
            a_i, a_next = x[r, i], x_next[r_next, i]
            for j in range(n_hid):
                w = W1[i, j] - lr * (delta[1, j] * a_i)  # gradient_ItoH
                W1[i, j] = w
                s_pre[1, j] += a_next * w
        x, r = x_next, r_next
    return sse_total, loss_total, correct


@functools.cache
def learner(hidden: int, output: int, loss: int, scale: bool, depth: int, single_output: bool,
            dtype: str):
    """The ``learn`` kernel for these activation and loss codes, input scaling, depth and dtype.

    The codes are constants of each specialisation, so LLVM drops the branches
    on them from the per-sample loop (about 25 % faster on small nets), and so
    is the scalar type, so float32 maths stays float32. Without ``scale``,
    ``scaler`` is a ``(2, 0)`` array that is never read.

    ``depth`` (layer sizes, inputs included) 3, one hidden layer (``single_output``: and one
    output unit, a constant of the kernel): ``learn(params, scalars, scaler, work, X, y,
    records)``, which takes the parameter buffer itself (see :func:`_layers`);
    any other depth: ``learn(Ws, bs, scalars, ...)`` with the tuples of views
    (see the module docstring). ``scalars`` is the net's (see ``SCALARS``),
    ``work`` holds ``s_pre``, ``s_post`` and ``delta``, ``y`` the targets
    flat, ``(rows · outputs,)``, and ``records`` gets the per-row records
    (see :func:`_records`). Both return True, the batch's ΣFE², summed loss
    and correct rows, and the first row's predicted and actual class; or
    False and nothing changed if the batch is not one the net takes (see
    :func:`_takes`).

    Each kernel is compiled (or loaded from the disk cache) for exactly the
    argument types the net passes, and compiles nothing else: other arrays
    (another dtype, not C-contiguous, read-only) raise ``TypeError`` at the
    call, so the caller can check and convert them without a pause to compile,
    and needs no check of its own for arrays already as the kernel takes them
    (on a call of one row, such checks in Python cost more than the training),
    but one: the dispatcher does not tell byte orders apart, so the caller
    passes only arrays of the net's own dtype.
    """
    real = np.dtype(dtype).type
    finite = float(np.finfo(dtype).max)  # the largest finite value
    limit = SCALE_LIMIT if scale else finite  # the largest |input| taken

    if depth == 3:
        @njit(**JIT)
        def learn_one_hidden(params, scalars, scaler, work, X, y, records):
            """Train on the rows of ``X`` in order (see :func:`_learn_rows_one_hidden`)."""
            if not _takes(scalars, X, y, limit, finite):
                return False, 0.0, 0.0, 0, 0, 0
            Y = y.reshape((X.shape[0], int(scalars[OUTPUTS])))
            W1, b1, W2, b2 = _layers(params, X.shape[1], Y.shape[1])
            sample_loss, predicted, actual = _records(records)
            sse, loss_total, correct = _learn_rows_one_hidden(
                hidden, output, loss, scale, False, single_output, W1, b1, W2, b2,
                scalars[BIAS] != 0, real(scalars[LR]), X, Y, None, X.shape[0], scaler,
                int(scalars[COUNT]), work[0], work[1], work[2], sample_loss, sample_loss,
                predicted, actual, real(1.0))
            count(scalars, X.shape[0], sse, loss_total, correct, scale)
            return True, sse, loss_total, correct, predicted[0], actual[0]

        kernel, layout = learn_one_hidden, (_array(dtype, 1),)
    else:
        @njit(**JIT)
        def learn(Ws, bs, scalars, scaler, work, X, y, records):
            """Train on the rows of ``X`` in order (see :func:`_learn_rows`)."""
            if not _takes(scalars, X, y, limit, finite):
                return False, 0.0, 0.0, 0, 0, 0
            Y = y.reshape((X.shape[0], int(scalars[OUTPUTS])))
            sample_loss, predicted, actual = _records(records)
            sse, loss_total, correct = _learn_rows(
                hidden, output, loss, scale, False, Ws, bs, scalars[BIAS] != 0,
                real(scalars[LR]), X, Y, None, X.shape[0], scaler, int(scalars[COUNT]),
                work[0], work[1], work[2], sample_loss, sample_loss, predicted, actual,
                real(1.0))
            count(scalars, X.shape[0], sse, loss_total, correct, scale)
            return True, sse, loss_total, correct, predicted[0], actual[0]

        kernel = learn
        layout = (types.UniTuple(_array(dtype, 2), depth - 1),
                  types.UniTuple(_array(dtype, 1), depth - 1))
    kernel.compile(layout + (_array("float64", 1), _array("float64", 2), _array(dtype, 3),
                             _array(dtype, 2), _array(dtype, 1), _array("int64", 2)))
    kernel.disable_compile()
    return kernel


@njit(**JIT)
def count(scalars, n, sse, loss, correct, scale):
    """Count a learned batch of ``n`` rows in a net's ``scalars``: its running totals, and its
    scaler's rows if it has one (``scale``)."""
    scalars[SAMPLES] += n
    scalars[SSE_TOTAL] += sse
    scalars[LOSS_TOTAL] += loss
    scalars[CORRECT_TOTAL] += correct
    if scale:
        scalars[COUNT] += n


@njit(inline="always", **JIT)
def _records(records):
    """The per-row records ``sample_loss`` (float64), ``predicted`` and ``actual`` (classes) in
    the rows of one ``(3, rows)`` int64 array, the loss as its bits: one argument, not three."""
    return records[0].view(np.float64), records[1], records[2]


def _array(dtype: str, ndim: int) -> types.Array:
    """Numba's type of a writeable C-contiguous array of ``dtype``, as ``typeof`` gives it."""
    return types.Array(numba.from_dtype(np.dtype(dtype)), ndim, "C")


@njit(inline="always", **JIT)
def _better(figures, k, j, by):
    """Whether member ``k``'s windowed figures beat member ``j``'s. A NaN loss (a member that
    diverged) ranks last, by accuracy too: with NaN weights a member predicts class 0 on every
    row, which can be more accurate than an honest member on a stream of mostly 0s."""
    k_nan, j_nan = figures[0, k] != figures[0, k], figures[0, j] != figures[0, j]
    if k_nan or j_nan:
        return j_nan and not k_nan
    if by == BY_ACCURACY and figures[1, k] != figures[1, j]:
        return figures[1, k] > figures[1, j]
    return figures[0, k] < figures[0, j]


@njit(**JIT)
def standardise_shared(X, scalers, counts, Z):
    """Standardise the batch once for every race member whose statistics equal member 0's.

    Row ``n`` of ``Z`` is row ``n`` of ``X`` standardised with member 0's
    statistics, which then take it (as :func:`_inputs`); every member whose
    statistics were the same (all of them, in a race that has trained them
    together) then gets member 0's new statistics: the same numbers each
    would compute alone, computed once. Returns which members share ``Z``.
    """
    shared = np.ones(len(counts), np.bool_)
    for k in range(1, len(counts)):
        shared[k] = counts[k] == counts[0] and np.array_equal(scalers[k], scalers[0])
    for n in range(X.shape[0]):
        _inputs(True, True, X, n, scalers[0], counts[0] + n, Z, n)
    for k in range(1, len(counts)):
        if shared[k]:
            scalers[k][...] = scalers[0]
    return shared


@njit(**JIT)
def rank(sample_loss, sample_sse, predicted, actual, figures, weight, alpha, leader, by, leaders,
         race_loss, race_predicted, totals):
    """The race's decaying-window figures and leaders, row by row, from the members' records.

    ``figures[0, k]`` (loss) and ``figures[1, k]`` (accuracy) are member
    ``k``'s means over the rows seen, row ``t`` back weighted ``(1 - alpha)**t``;
    ``weight`` is the sum of those weights. ``leaders[n]`` is the member leading
    *before* row ``n``, whose prediction is the race's: ``race_loss[n]``,
    ``race_predicted[n]``. The leader changes when another member's figures are
    strictly better (``by``: lowest loss, or highest accuracy then lowest loss).
    Column ``members`` of ``totals`` (3, members + 1) receives the race's ΣFE²,
    summed loss and correct rows (the members' columns are their own already,
    from the training kernel). Returns the new ``weight`` and leader.
    """
    n_members = sample_loss.shape[0]
    totals[:, n_members] = 0.0
    for n in range(sample_loss.shape[1]):
        # The race's prediction of row n: that of the member leading before it.
        leaders[n] = leader
        race_loss[n] = sample_loss[leader, n]
        race_predicted[n] = predicted[leader, n]
        totals[0, n_members] += sample_sse[leader, n]
        totals[1, n_members] += sample_loss[leader, n]
        totals[2, n_members] += 1.0 if predicted[leader, n] == actual[n] else 0.0
        # Then every member's windowed figures take row n, and the best leads.
        weight = (1.0 - alpha) * weight + 1.0
        step = 1.0 / weight
        for k in range(n_members):
            hit = 1.0 if predicted[k, n] == actual[n] else 0.0
            figures[0, k] += (sample_loss[k, n] - figures[0, k]) * step
            figures[1, k] += (hit - figures[1, k]) * step
        for k in range(n_members):
            if _better(figures, k, leader, by):
                leader = k
    return weight, leader


@functools.cache
def racer(hidden: int, output: int, loss: int, scale: bool, one_hidden: bool,
          single_output: bool, dtype: str):
    """The race's ``train`` kernel: some members of a race trained on a batch, in one call.

    ``Wss``, ``bss``, ``scalers`` and ``lrs`` hold one entry per member of one
    depth of the race (tuples of the members' own views: members may differ in
    widths and learning rates, not in depth; with ``one_hidden``, they have one
    hidden layer and are trained by :func:`_learn_rows_one_hidden`, as
    ``MLP.learn`` trains them); ``counts`` the rows each member's scaler has
    seen. The members listed in ``which`` each take the batch in order, exactly as
    they would alone, sharing the work buffers (sized for the widest): with
    ``scale``, a member in ``shared`` reads the rows already standardised in
    ``Z`` (see :func:`standardise_shared`), any other standardises ``X`` with
    its own statistics. ``race_index[k]`` is member ``k``'s index in the race: its
    entry of ``counts`` and ``shared``, its row of ``sample_loss``,
    ``sample_sse`` and ``predicted`` (the per-row figures) and its column of
    ``totals`` (ΣFE², summed loss, correct rows), so every depth's kernel writes
    the race's own arrays. Members are independent given the rows, so groups of
    them can run in parallel threads (the kernel releases the GIL), each with
    its own work buffers; then :func:`rank` ranks them.
    """
    real = np.dtype(dtype).type

    @njit(**JIT)
    def train(which, race_index, Wss, bss, use_bias, lrs, X, Z, Y, scalers, counts, shared,
              s_pre, s_post, delta, sample_loss, sample_sse, predicted, actual, totals):
        one = real(1.0)
        for k in which:
            r = race_index[k]
            own = scale and not shared[r]  # standardise with its own statistics, row by row
            if one_hidden:
                (W1, W2), (b1, b2) = Wss[k], bss[k]
                totals[0, r], totals[1, r], totals[2, r] = _learn_rows_one_hidden(
                    hidden, output, loss, own, True, single_output, W1, b1, W2, b2, use_bias,
                    lrs[k], X if own else Z, Y, None, X.shape[0], scalers[k], counts[r], s_pre,
                    s_post, delta, sample_loss[r], sample_sse[r], predicted[r], actual, one)
            else:
                totals[0, r], totals[1, r], totals[2, r] = _learn_rows(
                    hidden, output, loss, own, True, Wss[k], bss[k], use_bias, lrs[k],
                    X if own else Z, Y, None, X.shape[0], scalers[k], counts[r], s_pre, s_post,
                    delta, sample_loss[r], sample_sse[r], predicted[r], actual, one)

    return train


@functools.cache
def predictor(hidden: int, output: int, scale: bool, dtype: str):
    """The ``predict`` kernel for these activation codes, scaling and dtype (see :func:`learner`)."""
    real = np.dtype(dtype).type

    @njit(**JIT)
    def predict(Ws, bs, use_bias, X, scaler, count, s_pre, s_post, out):
        """Forward pass of every row of ``X`` into ``out`` (n, outputs); updates nothing, not
        even the scaler."""
        one = real(1.0)
        top = len(Ws)
        for n in range(X.shape[0]):
            _inputs(scale, False, X, n, scaler, count, s_post, 0)
            _forward(Ws, bs, use_bias, hidden, output, s_pre, s_post, one)
            for j in range(out.shape[1]):
                out[n, j] = s_post[top, j]

    return predict


@njit(**JIT)
def one_hot(labels, Y):
    """Row ``n`` of ``Y`` (zeros) gets a 1 in column ``labels[n]``. Returns the first row whose
    label is not a column of ``Y``, with ``Y`` left as it was; or -1, with every row set."""
    for n in range(len(labels)):
        if not 0 <= labels[n] < Y.shape[1]:
            return n
    for n in range(len(labels)):
        Y[n, labels[n]] = 1
    return -1


@njit(**JIT)
def ewma(values, mean, alpha):
    """The exponentially weighted mean after taking ``values`` in turn, from ``mean``.

    A NaN ``mean`` (nothing seen yet) starts from the first value.
    """
    for v in values:
        mean = v if mean != mean else mean + alpha * (v - mean)
    return mean


def _layer_views(row, shapes):
    """The layers of one model's parameter row: ``(Ws, bs)``, tuples of views (see below)."""


@overload(_layer_views, inline="always")  # compiled into its caller, which is cached
def _layer_views_overload(row, shapes):
    """Compiled :func:`_layer_views` for the depth that ``shapes`` (a tuple of ``(n_l,
    n_{l+1})`` pairs) has: a tuple's length is part of its type, so the code that builds
    one is written out for that depth. The views have the types of ``MLP``'s own, so
    :func:`_learn_rows` trains a fleet's model in place as it trains a network."""
    depth = len(shapes)
    lines = ["def views(row, shapes):", "    at = 0"]
    for l in range(depth):
        lines += [f"    n, m = shapes[{l}]",
                  f"    W{l} = row[at:at + n * m].reshape((n, m))",
                  f"    b{l} = row[at + n * m:at + n * m + m]",
                  "    at += n * m + m"]
    ws, bs = (", ".join(f"{name}{l}" for l in range(depth)) + "," for name in "Wb")
    lines.append(f"    return ({ws}), ({bs})")
    scope = {}
    exec("\n".join(lines), scope)
    return scope["views"]


@intrinsic
def prefetch(typingctx, array, index):
    """Ask the CPU to start loading ``array[index]`` (1-d) into cache, and go on: a hint
    (LLVM's ``llvm.prefetch``), with no effect on any value."""
    def codegen(context, builder, signature, args):
        pointer = cgutils.get_item_pointer(context, builder, signature.args[0],
                                           context.make_array(signature.args[0])(context, builder,
                                                                                 args[0]),
                                           [args[1]], wraparound=False)
        i32, byte = ir.IntType(32), ir.IntType(8).as_pointer()  # one declaration for every dtype
        llvm_prefetch = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [byte, i32, i32, i32]),
            "llvm.prefetch.p0")
        # read, keep, data
        builder.call(llvm_prefetch, [builder.bitcast(pointer, byte), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return types.void(array, index), codegen


@njit(**JIT)
def group_by_model(slots, counts):
    """The rows grouped by model, stable: ``models``, each model that has rows, in the order
    of its first row; ``firsts``: model ``models[g]``'s rows are ``order[firsts[g]:firsts[g
    + 1]]``, in their order; and ``at``: row ``n`` is ``order[at[n]]``. ``counts`` (one per
    model, all 0) is scratch, left all 0: the work is the rows', not the models' (a fleet
    of 10,000 models spent ~170 µs a call in passes over every model, when a service's
    drain of 512 rows cost ~280)."""
    n = len(slots)
    models = np.empty(n, np.int64)
    groups = 0
    for s in slots:
        if counts[s] == 0:
            models[groups] = s
            groups += 1
        counts[s] += 1
    # Each model's count becomes where its next row goes.
    firsts = np.empty(groups + 1, np.int64)
    firsts[0] = 0
    for g in range(groups):
        s = models[g]
        firsts[g + 1] = firsts[g] + counts[s]
        counts[s] = firsts[g]
    order, at = np.empty(n, np.int64), np.empty(n, np.int64)
    for i in range(n):
        place = counts[slots[i]]
        order[place], at[i] = i, place
        counts[slots[i]] = place + 1
    for g in range(groups):
        counts[models[g]] = 0
    return models[:groups], firsts, order, at


@njit(inline="always", **JIT)
def _prefetch_row(a, n):
    """Ask for every cache line of row ``n`` of ``a`` (2-d, C): its first element, one every
    64 bytes after it and its last (a row need not start on a line: NumPy aligns arrays to
    16 bytes, so a row of 128 bytes can straddle three lines)."""
    step = max(64 // a.itemsize, 1)
    for k in range(0, a.shape[1], step):
        prefetch(a[n], k)
    prefetch(a[n], a.shape[1] - 1)


@functools.cache
def fleet_learner(hidden: int, output: int, loss: int, scale: bool, one_hidden: bool,
                  single_output: bool, dtype: str):
    """The ``fleet`` kernel: rows of many networks of one architecture, in one call.

    ``params`` (models, parameters) and ``scalers`` (models, 2, inputs) hold
    every model; ``shapes`` the layers' ``(n_l, n_{l+1})``. Row ``n`` of ``X``
    belongs to model ``slots[n]``; ``counts`` is the grouping's scratch (one 0
    per model). The rows are taken model by model (see
    :func:`group_by_model`), so a model is fetched into cache once per call,
    not once per row, and trained by :func:`_learn_rows` (:func:`_learn_rows_one_hidden`
    with ``one_hidden``) on that model's views, in place, exactly as the model
    would learn them alone, as ``MLP.learn`` would. Models are independent, so
    every model ends as if the rows had been taken as they came. A model's
    rows are read where they lie in ``X`` and ``Y``, in order, through the
    grouping's ``order``, each asked for ``AHEAD`` rows before it is trained.
    ``samples[s]`` counts model ``s``'s rows (its scaler's too);
    ``loss_totals``, ``correct_totals``, ``ew_loss`` and ``ew_accuracy``
    (weight ``alpha``, NaN before any row) are its prequential figures.
    Per-row figures go to ``sample_loss``, ``predicted`` and ``actual``, in
    the rows' order; when some model's rows are scattered, the training writes
    them model by model to ``grouped_loss``, ``grouped_predicted`` and
    ``grouped_actual`` (as long as ``X``) and one pass in the rows' order reads
    them back: writing each row's figures to its place as it is trained costs
    a cache miss per row and array.

    A run that leaves one of its model's parameters non-finite is undone: the
    model (parameters, scaler, figures) is restored from ``backup`` and
    ``backup_scaler``, copies taken as the run starts, and the run's rows are
    marked in ``undone``. Returns the ΣFE² of the rows kept.
    """
    real = np.dtype(dtype).type
    # Finite iff the exponent bits are not all set: a max over them vectorises, where a loop
    # of np.isfinite with an early exit does not (it cost ~1 µs a model of 16-32-1).
    bits = np.int64 if real is np.float64 else np.int32
    exponent = bits(0x7FF0000000000000 if real is np.float64 else 0x7F800000)

    @njit(**JIT)
    def fleet(params, scalers, shapes, slots, counts, use_bias, lr, X, Y, s_pre, s_post,
              delta, sample_loss, predicted, actual, samples, loss_totals, correct_totals,
              ew_loss, ew_accuracy, alpha, backup, backup_scaler, undone, grouped_loss,
              grouped_predicted, grouped_actual):
        one = real(1.0)
        n_rows = len(slots)
        models, firsts, order, at = group_by_model(slots, counts)
        # A run's rows are consecutive when its first and last are m - 1 apart (the sort is
        # stable): then its records are written in place.
        scattered = False
        for g in range(len(models)):
            m = firsts[g + 1] - firsts[g]
            if order[firsts[g + 1] - 1] - order[firsts[g]] != m - 1:
                scattered = True
        undone[:] = False
        sse_kept = 0.0
        for g in range(len(models)):
            s, start, end = models[g], firsts[g], firsts[g + 1]
            m = end - start
            first = order[start]
            # The model's rows are read where they lie, through ``order`` from ``start`` on:
            # the training asks for each row AHEAD rows before it needs it, past this model's
            # last row into the next model's. (Copying them out first, as before, cost the
            # fleet ~50 ms a million rows: a copy moves too fast for the prefetch to keep up.)
            index = order[start:]
            if scattered:
                run_loss, run_predicted, run_actual = (grouped_loss[start:end],
                                                       grouped_predicted[start:end],
                                                       grouped_actual[start:end])
            else:
                run_loss, run_predicted, run_actual = (sample_loss[first:first + m],
                                                       predicted[first:first + m],
                                                       actual[first:first + m])
            row, scaler = params[s], scalers[s]
            backup[:] = row
            if scale:  # (without, the scaler is never read: one memory fetch less a model)
                backup_scaler[...] = scaler
            before = (samples[s], loss_totals[s], correct_totals[s], ew_loss[s], ew_accuracy[s])
            if one_hidden:
                W1, b1, W2, b2 = _layers(row, X.shape[1], Y.shape[1])
                sse = _learn_rows_one_hidden(hidden, output, loss, scale, False, single_output,
                                             W1, b1, W2, b2, use_bias, lr, X, Y, index, m,
                                             scaler, samples[s], s_pre, s_post, delta, run_loss,
                                             run_loss, run_predicted, run_actual, one)[0]
            else:
                Ws, bs = _layer_views(row, shapes)
                sse = _learn_rows(hidden, output, loss, scale, False, Ws, bs, use_bias, lr,
                                  X, Y, index, m, scaler, samples[s], s_pre, s_post, delta,
                                  run_loss, run_loss, run_predicted, run_actual, one)[0]
            # The model's figures in locals: through its arrays, each row would store and
            # load them again (the compiler cannot tell that the arrays do not overlap).
            total, correct = loss_totals[s], correct_totals[s]
            ew, ew_hits = ew_loss[s], ew_accuracy[s]
            for i in range(m):
                value = run_loss[i]
                hit = 1.0 if run_predicted[i] == run_actual[i] else 0.0
                total += value
                correct += 1 if hit else 0
                if ew != ew:  # NaN: the model's first row
                    ew, ew_hits = value, hit
                else:
                    ew += alpha * (value - ew)
                    ew_hits += alpha * (hit - ew_hits)
            loss_totals[s], correct_totals[s] = total, correct
            ew_loss[s], ew_accuracy[s] = ew, ew_hits
            samples[s] += m
            top, raw = bits(0), row.view(bits)
            for k in range(raw.shape[0]):
                top = max(top, raw[k] & exponent)
            if top != exponent:
                sse_kept += sse
            else:
                row[:] = backup
                if scale:
                    scaler[...] = backup_scaler
                samples[s], loss_totals[s], correct_totals[s], ew_loss[s], ew_accuracy[s] = before
                for i in range(m):
                    undone[order[start + i]] = True
        if scattered:
            for n in range(n_rows):
                ahead = at[min(n + AHEAD, n_rows - 1)]
                prefetch(grouped_loss, ahead)
                prefetch(grouped_predicted, ahead)
                prefetch(grouped_actual, ahead)
                place = at[n]
                sample_loss[n], predicted[n], actual[n] = (grouped_loss[place],
                                                           grouped_predicted[place],
                                                           grouped_actual[place])
        return sse_kept

    return fleet
