"""What the dashboard shows of one service, or of one model of a keyed service, in bounded memory.

A ``Board`` takes the service's messages (``metrics``, ``weights``, ``events``)
and keeps what the page draws: the learning curves as points against samples,
the markers (drift, restart), the latest figures, the race, and each layer's
weights shrunk to a heatmap of at most ``MAX_CELLS`` x ``MAX_CELLS``. Nothing
in it grows without bound: when the curves reach ``MAX_POINTS`` every other
point is dropped and from then on only every other message is kept (the
curves keep covering the whole run, evenly).

``update(seen)`` gives a page what changed since what it has seen; the page
starts from ``Seen()`` and keeps the one it gets back.

Examples
--------
>>> board = Board()
>>> board.metrics({"samples": 100, "version": 100, "accuracy": 0.5, "rolling_accuracy": 0.6,
...                "loss": 0.3, "rolling_loss": 0.2, "ew_loss": 0.25, "samples_per_s": 1000.0,
...                "rejected": {"shape": 2}, "ts": 0.0})  # True would mean a restart
False
>>> update, seen = board.update(Seen())
>>> update["points"]["reset"], update["points"]["rows"][0][:3]
(True, [100, 0.5, 0.6])
>>> board.update(seen)[0]["points"]["rows"]
[]
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

import numpy as np

MAX_POINTS = 2000  # points per curve; then every other one is dropped and the stride doubles
MAX_CELLS = 64  # heatmap cells per side; larger weight matrices are shown as block means
MAX_MARKERS = 200  # drift and restart markers kept (the oldest go first)
MAX_REJECTIONS = 20  # latest rejected messages shown with their errors
MAX_CONFUSION = 20  # classes up to which the confusion matrix is sent

# One row per kept metrics message; the page reads the columns in this order (then, with a
# race, each member's [ew_accuracy, ew_loss]).
COLUMNS = ("x", "accuracy", "rolling_accuracy", "ew_accuracy", "loss", "rolling_loss", "ew_loss",
           "samples_per_s", "rejected_total", "ts")


@dataclass(frozen=True)
class Seen:
    """How much of a board one page has: the curves' epoch and length, markers, weights, figures."""

    epoch: int = -1
    points: int = 0
    markers: int = -1
    weights: int = -1
    figures: int = -1


def json_number(value) -> float | None:
    """A JSON-safe number: None for a missing, NaN or infinite one (JSON has neither)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _shrink(matrix: np.ndarray, cells: int = MAX_CELLS) -> np.ndarray:
    """``matrix`` as at most ``cells`` x ``cells`` block means (unchanged if already small)."""
    for axis in (0, 1):
        n = matrix.shape[axis]
        if n > cells:
            starts = np.arange(cells + 1) * n // cells  # block i: [i*n//cells, (i+1)*n//cells)
            sizes = np.diff(starts).reshape((-1, 1) if axis == 0 else (1, -1))
            matrix = np.add.reduceat(matrix, starts[:-1], axis=axis) / sizes
    return matrix


def heatmap(weights: list[np.ndarray]) -> list[dict]:
    """Each layer's W, transposed (one row per unit, one column per input), shrunk and rounded.

    >>> layer, = heatmap([np.arange(6.0).reshape(3, 2)])
    >>> layer["shape"], layer["cells"], layer["absmax"]
    ([3, 2], [[0.0, 2.0, 4.0], [1.0, 3.0, 5.0]], 5.0)
    """
    layers = []
    for W in weights:
        W = np.asarray(W, dtype=np.float64)
        finite = np.isfinite(W)
        cells = _shrink(np.where(finite, W, 0.0).T)
        layers.append({"shape": list(W.shape), "cells": np.round(cells, 5).tolist(),
                       "absmax": float(np.max(np.abs(W[finite]), initial=0.0))})
    return layers


class Board:
    """The dashboard's view of one stream of messages; thread-safe (a bridge writes, pages read)."""

    def __init__(self, name: str = "") -> None:
        self.name = name  # "" for the service, else the model's key
        self._lock = threading.Lock()
        self._rows: list[list] = []
        self._epoch = 0  # bumps when rows are dropped, so pages take them afresh
        self._stride, self._skipped = 1, 0
        self._markers: list[dict] = []
        self._markers_changed = 0
        self._weights: dict | None = None
        self._weights_changed = 0
        self._figures: dict = {}
        self._figures_changed = 0
        self._rejections: list[dict] = []
        self._run = None  # the service's run id, once it sends one
        self._last_samples = -1
        self._offset = 0  # samples of earlier runs, so x keeps growing across restarts
        self._last_x = 0

    def __repr__(self) -> str:
        return (f"Board({self.name!r}, points={len(self._rows)}, stride={self._stride}, "
                f"markers={len(self._markers)})")

    # -- what comes in ----------------------------------------------------------------------------

    def metrics(self, m: dict) -> bool:
        """Take one ``metrics`` body; True when it shows the service restarted (a new run,
        or fewer samples than before), after which weights' versions start afresh."""
        with self._lock:
            samples = int(m.get("samples", m.get("version", 0)))
            run = m.get("run")
            restarted = ((run is not None and self._run is not None and run != self._run)
                         or samples < self._last_samples)
            if restarted:
                self._offset = max(self._last_x - samples, 0)
                self._mark(self._last_x, "restart", "restart" + (f" (run {run})" if run else ""))
                self._weights = None
                self._weights_changed += 1
            if run is not None:
                self._run = run
            self._last_samples = samples
            x = self._offset + samples
            self._last_x = x
            race = m.get("race")
            members = [(json_number(r.get("ew_accuracy")), json_number(r.get("ew_loss")))
                       for r in race["members"]] if race else []
            row = [x, json_number(m.get("accuracy")), json_number(m.get("rolling_accuracy")),
                   json_number(m.get("ew_accuracy")), json_number(m.get("loss")),
                   json_number(m.get("rolling_loss")), json_number(m.get("ew_loss")),
                   json_number(m.get("samples_per_s")), sum(m.get("rejected", {}).values()),
                   json_number(m.get("ts")), members]
            if restarted or not self._rows or x != self._rows[-1][0]:
                self._keep(row)  # not for an idle heartbeat: the page shows the newest figures anyway
            confusion = m.get("confusion")
            self._figures = {k: m[k] for k in ("samples", "version", "window", "models", "run", "model")
                             if k in m}
            self._figures.update(zip(COLUMNS, row), members=members, race=_race(race),
                                 rejected_by_reason=dict(m.get("rejected", {})),
                                 confusion=confusion if confusion and len(confusion) <= MAX_CONFUSION
                                 else None)
            self._figures_changed += 1
            return restarted

    def weights(self, version: int, layers: list[np.ndarray], member: int | None = None,
                run: str | None = None) -> None:
        """Take one decoded ``weights`` message (older versions than the shown one are ignored)."""
        cells = heatmap(layers)  # outside the lock: the only work proportional to the model
        with self._lock:
            if run is not None and self._run is not None and run != self._run:
                return  # from a run the metrics have not announced yet: wait for them
            if self._weights is not None and version < self._weights["version"]:
                return
            self._weights = {"version": version, "member": member, "layers": cells,
                             "received": time.time()}
            self._weights_changed += 1

    def event(self, e: dict) -> None:
        """Take one ``events`` body: drift becomes a marker, rejections are listed."""
        with self._lock:
            if e.get("kind") == "drift":
                self._mark(self._offset + int(e.get("version", self._last_samples)), "drift",
                           "drift" + (f" ({e['detector']})" if e.get("detector") else ""))
            elif e.get("kind") == "rejected":
                self._rejections = [{k: e.get(k) for k in ("ts", "reason", "error", "producer",
                                                           "seq")}, *self._rejections][:MAX_REJECTIONS]
                self._figures_changed += 1

    # -- what goes out ----------------------------------------------------------------------------

    def update(self, seen: Seen) -> tuple[dict, Seen]:
        """What a page that has ``seen`` lacks, and what it has seen after taking it."""
        with self._lock:
            reset = seen.epoch != self._epoch
            start = 0 if reset else seen.points
            update = {"points": {"reset": reset, "rows": self._rows[start:]}}
            if seen.markers != self._markers_changed:
                update["markers"] = list(self._markers)
            if seen.weights != self._weights_changed:
                update["weights"] = self._weights
            if seen.figures != self._figures_changed:
                update["figures"] = {**self._figures, "rejections": self._rejections}
            return update, Seen(self._epoch, len(self._rows), self._markers_changed,
                                self._weights_changed, self._figures_changed)

    @property
    def samples(self) -> int:
        """The latest sample count of the current run (-1 before any metrics)."""
        return self._last_samples

    # -- inside -----------------------------------------------------------------------------------

    def _keep(self, row: list) -> None:
        self._skipped += 1
        if self._skipped < self._stride and self._rows:
            return  # between strides; the page still draws the newest figures as a live point
        self._skipped = 0
        self._rows.append(row)
        if len(self._rows) >= MAX_POINTS:  # an even number: the newest row goes too, one stride
            self._rows = self._rows[::2]     # after the newest kept; so, to keep the spacing even,
            self._skipped = self._stride     # the next one comes a (new, double) stride after that
            self._stride *= 2
            self._epoch += 1

    def _mark(self, x: int, kind: str, label: str) -> None:
        self._markers = [*self._markers, {"x": x, "kind": kind, "label": label}][-MAX_MARKERS:]
        self._markers_changed += 1


def _race(race: dict | None) -> dict | None:
    """The race's figures with JSON-safe numbers."""
    if not race:
        return None
    return {**{k: race.get(k) for k in ("leader", "by", "window", "samples")},
            "members": [{k: (json_number(v) if isinstance(v, float) else v) for k, v in m.items()}
                        for m in race["members"]]}
