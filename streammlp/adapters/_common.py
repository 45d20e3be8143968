"""What the scikit-learn and River adapters share: hidden sizes, class labels, probabilities."""

from __future__ import annotations

import numpy as np


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
