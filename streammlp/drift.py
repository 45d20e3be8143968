"""Concept drift, detected on a model's prequential error stream (Page-Hinkley).

Each row a model learns is first predicted (prequential); whether that
prediction was wrong, ``x = predicted != actual``, is a stream of 0s and 1s
whose mean is the model's error rate. When the concept changes, the error
rate jumps up. The Page-Hinkley test (Page 1954) watches for that jump: with
``mean`` the running mean of ``x`` since the last detection,

    sum_t = alpha * sum_{t-1} + (x_t - mean_t - delta),   min_t = min(min_{t-1}, sum_t),

and a drift is detected when ``sum_t - min_t > threshold`` (after at least
``min_instances`` rows); the detector then starts afresh. This is River's
``drift.PageHinkley`` with ``mode="up"`` (only increases of the error rate
matter), step for step: the tests compare the two on the same streams.

The defaults differ from River's (``delta=0.005, threshold=50, alpha=0.9999``):
on a noisy 0/1 stream (error rate near 0.5) River's raise a false alarm every
few thousand rows. The classic test (``alpha=1``) with ``delta=0.02,
threshold=100`` raised none in 600 stationary streams of 200,000 rows at error
rates 0.02 to 0.5, and detects a jump of the error rate from 0.1 to 0.4 within
about 350 rows (``bench/drift.py``, figures in ``bench/README.md``).

State is five numbers per model, in one ``(models, 5)`` array, so a fleet of
models keeps its detectors side by side; one compiled call runs a whole
batch (rows of any models, each model's in order) for a few flops per row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from .kernels import JIT

DELTA = 0.02  # error-rate increase tolerated before the sum grows
THRESHOLD = 100.0  # lambda: how far the sum may rise above its minimum
ALPHA = 1.0  # fading factor of the sum (1: the classic test)
MIN_INSTANCES = 30  # rows since the last detection before any detection
# Columns of a detector's state row.
SEEN, N, MEAN, SUM, MIN = range(5)
WIDTH = 5


@dataclass(frozen=True)
class PageHinkley:
    """The Page-Hinkley test's settings (see the module's docstring), defaults written once.

    Examples
    --------
    >>> PageHinkley()
    PageHinkley(delta=0.02, threshold=100.0, alpha=1.0, min_instances=30)
    """

    delta: float = DELTA
    threshold: float = THRESHOLD
    alpha: float = ALPHA
    min_instances: int = MIN_INSTANCES

    def __post_init__(self) -> None:
        if not self.delta >= 0:
            raise ValueError(f"delta={self.delta}; expected a number >= 0 (e.g. {DELTA})")
        if not self.threshold > 0:
            raise ValueError(f"threshold={self.threshold}; expected a positive number "
                             f"(e.g. {THRESHOLD})")
        if not 0 < self.alpha <= 1:
            raise ValueError(f"alpha={self.alpha}; expected a fading factor in (0, 1] "
                             "(1: no fading)")
        if int(self.min_instances) != self.min_instances or self.min_instances < 1:
            raise ValueError(f"min_instances={self.min_instances}; expected a positive whole "
                             "number of rows")


@dataclass(frozen=True)
class Drifts:
    """The drifts one batch revealed: for each, the batch ``row`` where it was detected,
    the model (``slot``) and ``seen``, that model's rows seen up to and including it; of a
    race's drifts, also the members it ``reseeded`` at each (empty: none)."""

    rows: np.ndarray
    slots: np.ndarray
    seen: np.ndarray
    reseeded: tuple[tuple[int, ...], ...] = ()

    def __len__(self) -> int:
        return len(self.rows)


NO_DRIFTS = Drifts(*(np.zeros(0, dtype=np.int64) for _ in range(3)))


@njit(inline="always", **JIT)
def _step(state, s, x, delta, threshold, alpha, min_instances):
    """One row ``x`` of model ``s``: River's PageHinkley.update, mode "up"; True on a drift
    (then model ``s`` starts afresh, as River does on its next update)."""
    state[s, SEEN] += 1.0
    state[s, N] += 1.0
    state[s, MEAN] += (1.0 / state[s, N]) * (x - state[s, MEAN])
    state[s, SUM] = alpha * state[s, SUM] + (x - state[s, MEAN]) - delta
    if state[s, SUM] < state[s, MIN]:
        state[s, MIN] = state[s, SUM]
    if state[s, N] >= min_instances and state[s, SUM] - state[s, MIN] > threshold:
        state[s, N] = 0.0
        state[s, MEAN] = 0.0
        state[s, SUM] = 0.0
        state[s, MIN] = np.inf
        return True
    return False


@njit(**JIT)
def _detect_errors(state, slots, x, delta, threshold, alpha, min_instances, found):
    """Run rows ``x`` (model ``slots[i]`` each) through the test; the rows of drifts go in
    ``found``; returns how many."""
    count = 0
    for i in range(len(x)):
        if _step(state, slots[i], x[i], delta, threshold, alpha, min_instances):
            found[count] = i
            count += 1
    return count


@njit(**JIT)
def _detect_prequential(state, slots, predicted, actual, delta, threshold, alpha,
                        min_instances, found):
    """:func:`_detect_errors` on ``predicted != actual``, without building that stream."""
    count = 0
    for i in range(len(predicted)):
        x = 1.0 if predicted[i] != actual[i] else 0.0
        if _step(state, slots[i], x, delta, threshold, alpha, min_instances):
            found[count] = i
            count += 1
    return count


class DriftDetector:
    """A Page-Hinkley test per model, over the models' prequential error streams.

    Parameters
    ----------
    settings
        The test's settings.
    models
        How many models to watch at first (:meth:`grow` adds more).

    Examples
    --------
    >>> import numpy as np
    >>> detector = DriftDetector()
    >>> wrong = (np.random.default_rng(0).random(4000) < np.repeat([0.1, 0.6], 2000))
    >>> drifts = detector.update_errors(wrong)  # the error rate jumps at row 2000
    >>> drifts.rows, drifts.seen
    (array([2190]), array([2191]))
    """

    def __init__(self, settings: PageHinkley = PageHinkley(), models: int = 1) -> None:
        if not isinstance(settings, PageHinkley):
            raise TypeError(f"settings={settings!r}; expected a PageHinkley")
        self.settings = settings
        self.state = np.zeros((0, WIDTH))
        self.grow(models)

    def __repr__(self) -> str:
        return f"DriftDetector({self.settings!r}, models={len(self.state)})"

    @property
    def state(self) -> np.ndarray:
        """The test's statistics, a row per model watched (a view: writes go to the test)."""
        return self._rows[:self._models]

    @state.setter
    def state(self, state: np.ndarray) -> None:
        self._rows, self._models = state, len(state)

    def grow(self, models: int, seen=0) -> None:
        """Watch ``models`` models; the new ones start fresh, having learned ``seen`` rows
        already (one number, or one per new model: a resumed model's samples). Room grows
        by doubling: a keyed service grows its test a few models at a time."""
        old = self._models
        if models <= old:
            return
        if models > len(self._rows):
            rows = np.zeros((max(models, 2 * len(self._rows)), WIDTH))
            rows[:old] = self._rows[:old]
            self._rows = rows
        self._models = models  # rows past the models watched are never written: still 0
        self.state[old:, MIN] = np.inf
        self.state[old:, SEEN] = seen

    def update(self, predicted: np.ndarray, actual: np.ndarray,
               slots: np.ndarray | None = None) -> Drifts:
        """Run a batch's prequential record through the test: row ``i`` is an error if
        ``predicted[i] != actual[i]``, of model ``slots[i]`` (all model 0 when None)."""
        predicted = np.asarray(predicted, dtype=np.int64)
        actual = np.asarray(actual, dtype=np.int64)
        if predicted.shape != actual.shape or predicted.ndim != 1:
            raise ValueError(f"predicted of shape {predicted.shape} and actual of shape "
                             f"{actual.shape}; expected two 1-D arrays of the same length")
        return self.update_checked(predicted, actual, self._slots(slots, len(predicted)))

    def update_checked(self, predicted: np.ndarray, actual: np.ndarray,
                       slots: np.ndarray) -> Drifts:
        """:meth:`update` for int64 arrays that are known to fit (a race's own record, each
        batch): no checks."""
        found = np.empty(len(predicted), dtype=np.int64)
        p = self.settings
        count = _detect_prequential(self.state, slots, predicted, actual, p.delta, p.threshold,
                                    p.alpha, p.min_instances, found)
        return self._drifts(found[:count], slots) if count else NO_DRIFTS

    def update_errors(self, x, slots: np.ndarray | None = None) -> Drifts:
        """Run any stream of numbers ``x`` (one per row, model ``slots[i]``) through the test."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 1 or not np.isfinite(x).all():
            raise ValueError(f"x of shape {x.shape}; expected a 1-D array of finite numbers")
        slots = self._slots(slots, len(x))
        found = np.empty(len(x), dtype=np.int64)
        p = self.settings
        count = _detect_errors(self.state, slots, x, p.delta, p.threshold, p.alpha,
                               p.min_instances, found)
        return self._drifts(found[:count], slots)

    def _slots(self, slots, n: int) -> np.ndarray:
        if slots is None:
            if len(self.state) != 1:
                raise ValueError(f"this detector watches {len(self.state)} models; pass slots, "
                                 "the model of every row")
            return np.zeros(n, dtype=np.int64)
        slots = np.asarray(slots, dtype=np.int64)
        if slots.shape != (n,):
            raise ValueError(f"slots of shape {slots.shape}; expected one per row, ({n},)")
        if n and not (0 <= slots.min() and slots.max() < len(self.state)):
            raise ValueError(f"slots from {slots.min()} to {slots.max()}; this detector watches "
                             f"models 0 to {len(self.state) - 1} (grow it first)")
        return slots

    def _drifts(self, rows: np.ndarray, slots: np.ndarray) -> Drifts:
        """The drifts at ``rows``, with each model's count of rows seen at that row."""
        if not len(rows):
            return Drifts(rows, rows.copy(), rows.copy())
        at = slots[rows]
        seen = np.empty(len(rows), dtype=np.int64)
        for j, (row, s) in enumerate(zip(rows.tolist(), at.tolist())):
            # Rows of the same model after this one, in this batch, were also seen.
            seen[j] = int(self.state[s, SEEN]) - int(np.count_nonzero(slots[row + 1:] == s))
        return Drifts(rows, at, seen)

    def state_dict(self) -> dict:
        """Settings and state, to save beside a model."""
        return {"settings": vars(self.settings).copy(), "state": self.state.copy()}

    @classmethod
    def from_state(cls, saved: dict) -> "DriftDetector":
        """Rebuild a detector from :meth:`state_dict`."""
        detector = cls(PageHinkley(**saved["settings"]), models=0)
        state = np.asarray(saved["state"], dtype=np.float64)
        if state.ndim != 2 or state.shape[1] != WIDTH:
            raise ValueError(f"drift state of shape {state.shape}; expected (models, {WIDTH})")
        detector.state = state.copy()
        return detector
