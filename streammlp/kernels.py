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
- ``scaler``, ``count``: the online input standardisation (``scale``): rows 0 and
  1 of ``scaler`` (float64, ``(2, inputs)``) hold the running mean and sum of
  squared deviations (Welford) of the ``count`` rows seen so far. Each row is
  scaled with the statistics of the rows *before* it, then added to them. The
  seed's ``learn`` kernel (no scaling) takes neither; ``predict`` and the race
  take a ``(2, 0)`` array, never read, when there is no scaling.

:func:`racer` builds the race's kernel: several networks trained on the same
batch in one call, each exactly as alone, and their windowed figures.

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
from numba.extending import overload

# Numba flags, in one place. fastmath stays off: the kernels must agree with
# the plain NumPy reference to 1e-12, and input-major rows vectorise anyway.
JIT = dict(cache=True, nogil=True, fastmath=False)

# Activation codes (hidden and output layers).
IDENTITY, LOGISTIC, TANH, RELU, SOFTMAX = 0, 1, 2, 3, 4
# Loss codes.
SSE, CROSS_ENTROPY = 0, 1
# What ranks the members of a race: their windowed loss, or accuracy (then loss).
BY_LOSS, BY_ACCURACY = 0, 1


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


@njit(inline="always", **JIT)
def _learn_rows(hidden, output, loss, scale, keep_sse, Ws, bs, use_bias, lr, X, Y, scaler, count,
                s_pre, s_post, delta, sample_loss, sample_sse, predicted, actual, one):
    """Train one network on the rows of ``X`` in order, one gradient step per row.

    Before each step, records the prequential figures of that row's forward
    pass in ``sample_loss[n]``, ``predicted[n]`` and ``actual[n]`` (classes),
    and its ΣFE² in ``sample_sse[n]`` if ``keep_sse``. Returns the batch's ΣFE²
    over rows and outputs. ``scale`` is a constant in the single-network
    kernels, a per-member flag in the race's.
    """
    top = len(Ws)  # row of the output layer in the work buffers
    n_out = Y.shape[1]
    sse_total = 0.0
    for n in range(X.shape[0]):
        _inputs(scale, True, X, n, scaler, count + n, s_post, 0)
        _forward(Ws, bs, use_bias, hidden, output, s_pre, s_post, one)
        sse, value = _output_error(output, loss, s_pre, s_post, delta, Y, n, top, one)
        sse_total += sse
        sample_loss[n] = value
        if keep_sse:
            sample_sse[n] = sse
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


@functools.cache
def learner(hidden: int, output: int, loss: int, scale: bool, dtype: str):
    """The ``learn`` kernel for these activation and loss codes, input scaling and dtype.

    The codes are constants of each specialisation, so LLVM drops the branches
    on them from the per-sample loop (about 25 % faster on small nets), and so
    is the scalar type, so float32 maths stays float32. Each is compiled on
    first use and cached on disk like any ``cache=True`` function.

    Without ``scale`` it is the seed's network, and its kernel keeps the loop
    written out, with no scaler arguments: routed through :func:`_learn_rows`
    (Numba's inlining) or given two more arguments, float64 nets of every size
    ran 1.5-3 % slower. ``tests/test_race.py`` checks that the two give the
    same bits.
    """
    real = np.dtype(dtype).type

    if scale:
        @njit(**JIT)
        def learn_scaled(Ws, bs, use_bias, lr, X, Y, scaler, count, s_pre, s_post, delta,
                         sample_loss, predicted, actual):
            """Train on the rows of ``X`` in order (see :func:`_learn_rows`); returns ΣFE²."""
            return _learn_rows(hidden, output, loss, True, False, Ws, bs, use_bias, lr, X, Y,
                               scaler, count, s_pre, s_post, delta, sample_loss, sample_loss,
                               predicted, actual, real(1.0))

        return learn_scaled

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
            for k in range(X.shape[1]):
                s_post[0, k] = X[n, k]
            _forward(Ws, bs, use_bias, hidden, output, s_pre, s_post, one)
            sse, value = _output_error(output, loss, s_pre, s_post, delta, Y, n, top, one)
            sse_total += sse
            sample_loss[n] = value
            predicted[n] = _classify(s_post, top, n_out)
            actual[n] = _classify(Y, n, n_out)

            # Backward, top layer first, as in _learn_rows.
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


@njit(inline="always", **JIT)
def _better(figures, k, j, by):
    """Whether member ``k``'s windowed figures beat member ``j``'s; a NaN loss ranks last."""
    if by == BY_ACCURACY and figures[1, k] != figures[1, j]:
        return figures[1, k] > figures[1, j]
    if figures[0, j] != figures[0, j]:
        return figures[0, k] == figures[0, k]
    return figures[0, k] < figures[0, j]


@njit(inline="always", **JIT)
def _same_statistics(scalers, counts):
    """Which members' input statistics equal member 0's, exactly."""
    same = np.ones(len(counts), np.bool_)
    for k in range(1, len(counts)):
        same[k] = counts[k] == counts[0] and np.array_equal(scalers[k], scalers[0])
    return same


@functools.cache
def racer(hidden: int, output: int, loss: int, scale: bool, by: int, dtype: str):
    """The ``race`` kernel: every member of a race trained on a batch, in one call.

    ``Wss``, ``bss``, ``scalers`` hold one entry per member (tuples of the
    members' own views: members may differ in widths and learning rates
    ``lrs``, not in depth); ``counts`` the rows each member's scaler has seen.
    Each member takes the batch in order, exactly as it would alone, sharing the
    work buffers (sized for the widest); its per-row figures go to row ``k`` of
    ``sample_loss``, ``sample_sse`` and ``predicted``. With ``scale``, the batch
    is standardised once, with member 0's statistics, for every member whose
    statistics are the same (all of them, in a race that has trained them
    together): the same numbers each would compute alone, computed once.

    Then, row by row, the decaying-window figures: ``figures[0, k]`` (loss) and
    ``figures[1, k]`` (accuracy) are member ``k``'s means over the rows seen,
    row ``t`` back weighted ``(1 - alpha)**t``; ``weight`` is the sum of those
    weights. ``leaders[n]`` is the member leading *before* row ``n``, whose
    prediction is the race's: ``race_loss[n]``, ``race_predicted[n]``. The
    leader changes when another member's figures are strictly better (``by``:
    lowest loss, or highest accuracy then lowest loss).

    ``totals`` (3, members + 1) receives the batch's ΣFE², loss and correct
    rows of each member, then of the race. Returns the new ``weight`` and leader.
    """
    real = np.dtype(dtype).type

    @njit(**JIT)
    def race(Wss, bss, use_bias, lrs, X, Y, scalers, counts, s_pre, s_post, delta,
             sample_loss, sample_sse, predicted, actual, figures, weight, alpha, leader,
             leaders, race_loss, race_predicted, totals):
        one = real(1.0)
        n_members = len(Wss)
        shared = _same_statistics(scalers, counts) if scale else np.zeros(n_members, np.bool_)
        Z = np.empty_like(X) if scale else X  # the batch as the sharing members see it
        if scale:
            for n in range(X.shape[0]):
                _inputs(True, True, X, n, scalers[0], counts[0] + n, Z, n)
        for k in range(n_members):
            own = scale and not shared[k]  # standardise with its own statistics, row by row
            totals[0, k] = _learn_rows(hidden, output, loss, own, True, Wss[k], bss[k], use_bias,
                                       lrs[k], X if own else Z, Y, scalers[k], counts[k], s_pre,
                                       s_post, delta, sample_loss[k], sample_sse[k], predicted[k],
                                       actual, one)
            if k > 0 and shared[k]:
                scalers[k][...] = scalers[0]
        totals[1:, :] = 0.0
        totals[0, n_members] = 0.0
        for n in range(X.shape[0]):
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
                totals[1, k] += sample_loss[k, n]
                totals[2, k] += hit
                figures[0, k] += (sample_loss[k, n] - figures[0, k]) * step
                figures[1, k] += (hit - figures[1, k]) * step
            for k in range(n_members):
                if _better(figures, k, leader, by):
                    leader = k
        return weight, leader

    return race


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


@functools.cache
def fleet_learner(hidden: int, output: int, loss: int, scale: bool, dtype: str):
    """The ``fleet`` kernel: rows of many networks of one architecture, in one call.

    ``params`` (models, parameters) and ``scalers`` (models, 2, inputs) hold
    every model; ``shapes`` the layers' ``(n_l, n_{l+1})``. Row ``n`` of ``X``
    belongs to model ``slots[n]``; each run of one model's rows is trained by
    :func:`_learn_rows` on that model's views, in place, in order, exactly as
    the model would learn it alone. ``samples[s]`` counts model ``s``'s rows
    (its scaler's too); ``loss_totals``, ``correct_totals``, ``ew_loss`` and
    ``ew_accuracy`` (weight ``alpha``, NaN before any row) are its prequential
    figures. Per-row figures go to ``sample_loss``, ``predicted`` and ``actual``.

    A run that leaves one of its model's parameters non-finite is undone: the
    model (parameters, scaler, figures) is restored from ``backup`` and
    ``backup_scaler``, copies taken as the run starts (while the model is
    fetched into cache anyway), and the run's rows are marked in ``undone``.
    Returns the ΣFE² of the rows kept.
    """
    real = np.dtype(dtype).type

    @njit(**JIT)
    def fleet(params, scalers, shapes, slots, use_bias, lr, X, Y, s_pre, s_post, delta,
              sample_loss, predicted, actual, samples, loss_totals, correct_totals, ew_loss,
              ew_accuracy, alpha, backup, backup_scaler, undone):
        one = real(1.0)
        sse_kept = 0.0
        start = 0
        while start < X.shape[0]:
            s = slots[start]
            end = start + 1
            while end < X.shape[0] and slots[end] == s:
                end += 1
            row, scaler = params[s], scalers[s]
            backup[:] = row
            backup_scaler[...] = scaler
            before = (samples[s], loss_totals[s], correct_totals[s], ew_loss[s], ew_accuracy[s])
            Ws, bs = _layer_views(row, shapes)
            sse = _learn_rows(hidden, output, loss, scale, False, Ws, bs, use_bias, lr,
                              X[start:end], Y[start:end], scaler, samples[s], s_pre, s_post,
                              delta, sample_loss[start:end], sample_loss[start:end],
                              predicted[start:end], actual[start:end], one)
            for n in range(start, end):
                value = sample_loss[n]
                hit = 1.0 if predicted[n] == actual[n] else 0.0
                loss_totals[s] += value
                correct_totals[s] += 1 if hit else 0
                if ew_loss[s] != ew_loss[s]:  # NaN: the model's first row
                    ew_loss[s], ew_accuracy[s] = value, hit
                else:
                    ew_loss[s] += alpha * (value - ew_loss[s])
                    ew_accuracy[s] += alpha * (hit - ew_accuracy[s])
            samples[s] += end - start
            finite = True
            for k in range(row.shape[0]):
                if not np.isfinite(row[k]):
                    finite = False
                    break
            if finite:
                sse_kept += sse
            else:
                row[:] = backup
                scaler[...] = backup_scaler
                samples[s], loss_totals[s], correct_totals[s], ew_loss[s], ew_accuracy[s] = before
            undone[start:end] = not finite
            start = end
        return sse_kept

    return fleet
