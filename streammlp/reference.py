"""Plain NumPy reference of per-sample backpropagation, written in the seed's terms.

Slow and obviously correct: one Python iteration per sample, whole-layer NumPy
operations inside it. Tests compare the Numba kernels with it, and the
benchmarks measure the kernels against it. It shares no code with them.

Terms: ``S_preA`` = dot(previous layer's output, weights) (+ bias),
``S_postA = f_A(S_preA)``, ``FE = S_postA,O - T``, ``S_ERROR = FE * f_A'(S_preA,O)``.
With one hidden layer, ``gradient_HtoO = S_ERROR * S_postA,H`` and
``gradient_ItoH = S_ERROR * weight_HtoO * f_A'(S_preA,H) * input``, from the
HtoO weights before this sample's update; deeper nets repeat the step down.
"""

from __future__ import annotations

import numpy as np


def f_A(name: str, S_preA: np.ndarray) -> np.ndarray:
    """Activation of a whole layer."""
    if name == "logistic":
        return 1.0 / (1.0 + np.exp(-S_preA))
    if name == "tanh":
        return np.tanh(S_preA)
    if name == "relu":
        return np.maximum(S_preA, 0.0)
    if name == "softmax":
        e = np.exp(S_preA - S_preA.max())
        return e / e.sum()
    if name == "identity":
        return S_preA
    raise ValueError(f"unknown activation {name!r}")


def f_A_prime(name: str, S_preA: np.ndarray) -> np.ndarray:
    """Derivative of the activation at ``S_preA`` (elementwise)."""
    if name == "logistic":
        return f_A("logistic", S_preA) * (1.0 - f_A("logistic", S_preA))
    if name == "tanh":
        return 1.0 - np.tanh(S_preA) ** 2
    if name == "relu":
        return (S_preA > 0).astype(S_preA.dtype)
    if name == "identity":
        return np.ones_like(S_preA)
    raise ValueError(f"no elementwise derivative for {name!r}")


def forward(weights, biases, x, activation="logistic", output="logistic"):
    """Lists ``S_preA`` and ``S_postA`` per layer; ``S_postA[0]`` is the input."""
    S_preA, S_postA = [None], [x]
    for l, (W, b) in enumerate(zip(weights, biases)):
        S_preA.append(np.dot(S_postA[-1], W) + b)
        S_postA.append(f_A(output if l == len(weights) - 1 else activation, S_preA[-1]))
    return S_preA, S_postA


def learn(weights, biases, X, Y, lr, activation="logistic", output="logistic", loss="sse",
          bias=True):
    """Train lists of ``weights``/``biases`` in place on rows of ``X``/``Y``, one step per row.

    Returns the per-row prequential loss (½ΣFE² or cross-entropy), before each update.
    """
    losses = []
    for x, T in zip(X, Y):
        S_preA, S_postA = forward(weights, biases, x, activation, output)
        FE = S_postA[-1] - T
        if loss == "sse":
            S_ERROR = FE * f_A_prime(output, S_preA[-1])
            losses.append(0.5 * np.sum(FE ** 2))
        else:  # cross-entropy with softmax or logistic outputs: the derivative cancels
            S_ERROR = FE
            p = S_postA[-1]
            losses.append(-np.sum(T * np.log(p)) if output == "softmax"
                          else -np.sum(T * np.log(p) + (1 - T) * np.log(1 - p)))
        # All gradients first, from the weights as they were before this sample.
        gradients, bias_gradients, delta = [], [], S_ERROR
        for l in range(len(weights) - 1, -1, -1):
            gradients.insert(0, np.outer(S_postA[l], delta))
            bias_gradients.insert(0, delta)
            if l > 0:
                delta = np.dot(weights[l], delta) * f_A_prime(activation, S_preA[l])
        for W, b, gW, gb in zip(weights, biases, gradients, bias_gradients):
            W -= lr * gW
            if bias:
                b -= lr * gb
    return np.array(losses)


def seed_learn(weight_ItoH, weight_HtoO, inputs, targets, LR=1.0):
    """The seed program's 3-4-1 step, literally: no bias, logistic, one sample at a time.

    ``weight_ItoH`` is (inputs, hidden), ``weight_HtoO`` (hidden,) or (hidden, 1);
    both are updated in place.
    """
    w_HtoO = weight_HtoO.reshape(-1)
    for input, T in zip(inputs, np.reshape(targets, -1)):
        S_preA_H = np.dot(input, weight_ItoH)
        S_postA_H = f_A("logistic", S_preA_H)
        S_preA_O = np.dot(S_postA_H, w_HtoO)
        S_postA_O = f_A("logistic", S_preA_O)
        FE = S_postA_O - T
        S_ERROR = FE * f_A_prime("logistic", S_preA_O)
        gradient_HtoO = S_ERROR * S_postA_H
        gradient_ItoH = np.outer(input, S_ERROR * w_HtoO * f_A_prime("logistic", S_preA_H))
        w_HtoO -= LR * gradient_HtoO
        weight_ItoH -= LR * gradient_ItoH


def standardise_prequential(X: np.ndarray) -> np.ndarray:
    """Each row of ``X`` standardised with the statistics of the rows *before* it.

    Row ``n`` becomes ``(X[n] - mean) / sqrt(var)`` with the mean and population
    variance of ``X[:n]``, recomputed from scratch (no running update); a feature
    whose variance is 0 (always so for the first row) becomes 0.
    """
    Z = np.zeros(X.shape)
    for n in range(1, len(X)):
        mean, var = X[:n].mean(axis=0), X[:n].var(axis=0)
        Z[n] = np.where(var > 0, (X[n] - mean) / np.sqrt(np.where(var > 0, var, 1.0)), 0.0)
    return Z
