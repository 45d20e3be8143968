"""Prequential (test-then-train) metrics of a stream, updated a batch at a time.

Every figure comes from the kernel's forward pass of each sample *before* its
update (``Prequential``), so it measures how well the model predicts data it
has not learned yet.
"""

from __future__ import annotations

import time

import numpy as np

from . import kernels
from .network import Prequential


class StreamMetrics:
    """Cumulative, rolling-window and exponentially weighted loss and accuracy, and throughput.

    Parameters
    ----------
    classes
        Number of classes, for the confusion matrix (2 for a one-output net).
    window
        Samples in the rolling window.
    alpha
        Weight of the newest sample in the exponentially weighted loss.

    Examples
    --------
    >>> import numpy as np
    >>> from streammlp import MLP
    >>> net = MLP([3, 4, 1], seed=0)
    >>> m = StreamMetrics(classes=2, window=100)
    >>> m.update(net.learn(np.zeros((10, 3)), np.zeros(10)))
    >>> m.samples, m.rolling_count
    (10, 10)
    """

    def __init__(self, classes: int, window: int = 1000, alpha: float = 0.01) -> None:
        self.window, self.alpha = window, alpha
        self.samples = 0
        self.loss_total = 0.0
        self.correct_total = 0
        self.ew_loss = float("nan")
        self.confusion = np.zeros((classes, classes), dtype=np.int64)  # [actual, predicted]
        # Ring buffers of the last `window` samples' loss and correctness.
        self._loss = np.zeros(window)
        self._correct = np.zeros(window, dtype=bool)
        self._next = 0  # slot of the next sample
        self.rolling_count = 0
        self._started = time.monotonic()
        self._rate_mark = (self._started, 0)
        self.samples_per_s = 0.0

    def __repr__(self) -> str:
        return f"StreamMetrics(samples={self.samples}, accuracy={self.accuracy:.4f}, loss={self.loss:.4f})"

    def update(self, result: Prequential) -> None:
        """Add one batch's figures, in order."""
        n = result.n
        correct = result.predicted == result.actual
        self.samples += n
        self.loss_total += result.loss
        self.correct_total += int(np.count_nonzero(correct))
        k = len(self.confusion)
        self.confusion += np.bincount(result.actual * k + result.predicted,
                                      minlength=k * k).reshape(k, k)
        self.ew_loss = float(kernels.ewma(result.sample_loss, self.ew_loss, self.alpha))
        # Only the last `window` samples of the batch can stay in the window.
        tail = min(n, self.window)
        slots = (self._next + np.arange(tail)) % self.window
        self._loss[slots] = result.sample_loss[n - tail:]
        self._correct[slots] = correct[n - tail:]
        self._next = (self._next + tail) % self.window
        self.rolling_count = min(self.rolling_count + tail, self.window)

    @property
    def loss(self) -> float:
        """Mean prequential loss since the start."""
        return self.loss_total / self.samples if self.samples else float("nan")

    @property
    def accuracy(self) -> float:
        return self.correct_total / self.samples if self.samples else float("nan")

    @property
    def rolling_loss(self) -> float:
        """Mean loss over the last ``window`` samples (fewer at the start)."""
        return self._loss.sum() / self.rolling_count if self.rolling_count else float("nan")

    @property
    def rolling_accuracy(self) -> float:
        return self._correct.sum() / self.rolling_count if self.rolling_count else float("nan")

    def rate(self) -> float:
        """Samples/s since the previous call (since the start for the first)."""
        now = time.monotonic()
        then, count = self._rate_mark
        if now > then:
            self.samples_per_s = (self.samples - count) / (now - then)
        self._rate_mark = (now, self.samples)
        return self.samples_per_s

    def summary(self) -> dict:
        """The figures as plain numbers, as the ``metrics`` message carries them."""
        return {"samples": self.samples, "loss": self.loss, "rolling_loss": self.rolling_loss,
                "ew_loss": self.ew_loss, "accuracy": self.accuracy,
                "rolling_accuracy": self.rolling_accuracy, "window": self.window,
                "confusion": self.confusion.tolist(), "samples_per_s": self.samples_per_s}
