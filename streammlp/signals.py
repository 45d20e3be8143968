"""Built-in labelled streams for online classification, seeded and vectorised.

Each generator yields ``(X, y)`` batches forever (or for ``n`` samples), so a
stream of any length costs no memory.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

WAVEFORMS = ("sine", "square", "triangle", "sawtooth")


def waveforms(n: int, window: int = 32, batch: int = 1024, noise: float = 0.2,
              drift_at: int | None = None, seed: int | None = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Windows of a noisy periodic signal; the class is its waveform (see ``WAVEFORMS``).

    Frequency (1 to 4 cycles per window), phase and amplitude (0.5 to 1.5) are
    random; Gaussian noise of standard deviation ``noise`` is added. From
    sample ``drift_at`` on, the labels are permuted (concept drift): what was
    class k is now class k+1 mod 4.

    Examples
    --------
    >>> X, y = next(waveforms(8, window=16, seed=1))
    >>> X.shape, y.shape, set(y.tolist()) <= {0, 1, 2, 3}
    ((8, 16), (8,), True)
    """
    rng = np.random.default_rng(seed)
    t = np.arange(window) / window
    for start in range(0, n, batch):
        m = min(batch, n - start)
        y = rng.integers(0, len(WAVEFORMS), m)
        cycles = rng.uniform(1, 4, (m, 1))
        phase = rng.uniform(0, 1, (m, 1))
        amplitude = rng.uniform(0.5, 1.5, (m, 1))
        u = (cycles * t + phase) % 1.0  # position within the period, in [0, 1)
        shapes = np.stack([np.sin(2 * np.pi * u), np.where(u < 0.5, 1.0, -1.0),
                           4 * np.abs(u - 0.5) - 1, 2 * u - 1])
        X = amplitude * shapes[y, np.arange(m)] + rng.normal(0, noise, (m, window))
        if drift_at is not None:
            y = np.where(np.arange(start, start + m) >= drift_at, (y + 1) % len(WAVEFORMS), y)
        yield X, y


def bands(n: int, window: int = 64, classes: int = 4, batch: int = 1024, noise: float = 0.5,
          drift_at: int | None = None, seed: int | None = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Windows of a noisy tone; the class is which of ``classes`` equal frequency bands it is in.

    Frequencies span 1 to ``window / 4`` cycles per window; phase and amplitude
    (0.5 to 1.5) are random, plus Gaussian noise. From ``drift_at`` on, the
    noise level doubles (concept drift of another kind: the task gets harder).

    Examples
    --------
    >>> X, y = next(bands(6, window=32, seed=2))
    >>> X.shape, int(y.max()) < 4
    ((6, 32), True)
    """
    rng = np.random.default_rng(seed)
    t = np.arange(window) / window
    edges = np.linspace(1, window / 4, classes + 1)
    for start in range(0, n, batch):
        m = min(batch, n - start)
        y = rng.integers(0, classes, m)
        cycles = rng.uniform(edges[y], edges[y + 1])[:, None]
        amplitude = rng.uniform(0.5, 1.5, (m, 1))
        sigma = np.where(np.arange(start, start + m) >= (drift_at if drift_at is not None else n),
                         2.0 * noise, noise)[:, None]
        X = amplitude * np.sin(2 * np.pi * (cycles * t + rng.uniform(0, 1, (m, 1))))
        yield X + sigma * rng.standard_normal((m, window)), y


def points(n: int, batch: int = 1024, drift_at: int | None = None,
           seed: int | None = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The seed's data: 3-D points uniform in [-1, 1], class 1 when the first coordinate >= 0.

    From ``drift_at`` on the classes swap (class 1 when the first coordinate < 0).

    Examples
    --------
    >>> X, y = next(points(5, seed=0))
    >>> bool(((X[:, 0] >= 0) == (y == 1)).all())
    True
    """
    rng = np.random.default_rng(seed)
    for start in range(0, n, batch):
        m = min(batch, n - start)
        X = rng.uniform(-1, 1, (m, 3))
        y = X[:, 0] >= 0
        if drift_at is not None:
            y ^= np.arange(start, start + m) >= drift_at
        yield X, y.astype(np.float64)
