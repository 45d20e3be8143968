"""A race of configurations: several networks learn every sample; the one predicting best serves.

Nobody knows the right learning rate or width of a stream in advance, and the
kernels are fast enough to try several at once. Each member of a :class:`Race`
takes one exact gradient step per sample, in order, exactly as it would alone;
the members of each depth are trained in one compiled call per batch (linear
members, with no hidden layer, beside one-hidden-layer members: two calls). Each
member's prequential loss and accuracy are kept over a decaying window, and the member
with the best figures leads: it answers ``predict``, and its prediction of each
sample, made before that sample is learned, is the race's prequential score.

A classifier race watches that score for concept drift (a Page-Hinkley test,
``streammlp.drift``, one compiled call per batch) and may react to a drift by
re-seeding its weakest members, so that someone is always fresh.
"""

from __future__ import annotations

import copy
import os
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from itertools import product
from typing import Sequence

import numpy as np

from . import checkpoint, kernels
from .drift import NO_DRIFTS, SEEN, DriftDetector, Drifts, PageHinkley
from .network import ACTIVATIONS, LOSSES, MLP, OUTPUTS, Prequential, _choose, initialise, read

# The default grid of a classifier race (logistic or softmax outputs): widths HIDDEN x LRS, then
# one linear member (no hidden layer) per LINEAR_LRS. Chosen on the quality suite's 16
# classification streams (bench/quality.py; bench/README.md, "A cheaper classifier grid"): of
# 10,640 grids ranked exactly from one race of every candidate member, these six keep every
# stream the nine-member grid (widths 8, 32 x lr 0.05, 0.2, 1; linear 0.005, 0.01, 0.05) won,
# and its recovery after each abrupt drift, in 0.69-0.75x its time a row on Phishing and Bananas.
# With standardised inputs and cross-entropy, a member at lr 3 led on 23 of 131,226 samples over
# bench/race.py's eight streams: pure cost. The lr-1 members bring the race back after Mixed's
# abrupt drift (557 rows; 1,061 without them, River's best 813); lr 0.2 leads Bananas and
# about half of each synthetic stream. Without lr 0.05, bands scores 0.8128 where it scored
# 0.8591 (the 32-wide member at 0.05 led 70 % of it), still 22 points ahead of River's best.
LRS = (0.2, 1.0)
HIDDEN = (8, 32)  # 32 wide leads the signals streams: 16 wide costs waveforms, bands 5-11 points
# Learning rates of the classifier grid's linear members. Strong on nearly linear, noisy
# concepts: ranked by accuracy beside the hidden members, they took the quality suite from 15
# to 17 of 21 streams. 0.05 leads digits, 0.005 Waveform and points; a third at 0.01 only
# shortened RandomTree's recovery (1,334 rows against 2,861; River's best 6,204), for 1.03-1.11x
# the race's time. Lower than LRS: a linear member is noisy at lr 0.2, and in regression
# (identity output) diverged at 0.2 and up.
LINEAR_LRS = (0.005, 0.05)
# The default grid of a regression race (identity outputs, SSE), chosen on the quality suite's
# five regression streams (bench/README.md, "A grid of its own for regression"): two hidden
# members, 8 and 16 wide, and one linear member, all at lr 0.02. The SSE gradient grows with
# the targets, far from 0 there: of the nine-member classifier grid named above, the lr-1
# members never led on any of the five, and the 8-wide one at lr 1 and the 32-wide one at 0.2
# diverged on the Friedman streams.
# These three scored a lower MAE than those nine on each of the five, in 0.3-0.5x the time.
REGRESSION_LRS = (0.02,)
REGRESSION_HIDDEN = (8, 16)
REGRESSION_LINEAR_LRS = (0.02,)
WINDOW = 1000  # samples in the decaying window that ranks the members
BY = {"loss": kernels.BY_LOSS, "accuracy": kernels.BY_ACCURACY}
# Threads a race trains its members in, by default: one per core this process may use. The
# kernels release the GIL; the service's ZeroMQ I/O thread needs little and takes its turn.
THREADS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
# A member's work per row, in multiply-adds: its parameters, and these for each unit and each
# row (MLP.learn's time per row on nets of 3 to 16 inputs, fitted: a unit costs as much as 12
# parameters, a row's scaling, error and records as 300). What the threads' groups of members
# are balanced on: by parameters alone, the 3-32-1 members of a 3-input race went to one thread
# and the six smaller ones, together slower, to the other.
UNIT_WORK, ROW_WORK = 12, 300
# Below this much work per batch (rows x every member's work per row), handing work to
# another thread costs more than it saves: train serially. The default grid's races of 3 to 9
# inputs, on a quiet machine, lose at 500,000 (0.67-0.96x), gain 0.98-1.29x at 1,000,000 and
# 1.2-1.5x at 2,000,000 (``bench/kernels.py --part handoff``, bench/README.md).
PARALLEL_WORK = 1_000_000
# What the members must share to run in one race (they may differ in depth, width and lr).
SHARED = ("n_inputs", "n_outputs", "activation", "output", "loss", "bias", "dtype", "scale")
DRIFT = PageHinkley()  # the test watching a race's errors, by default (its own defaults)
RESEED = 0  # members re-seeded on a drift, by default (bench/README.md: what it bought)
RECENT_DRIFTS = 16  # drifts a race keeps for summary(): the latest
# With re-seeding, a batch is learned in passes of at most this many rows, each undone and
# learned again up to a drift found inside it: a drift costs at most this many rows twice.
# Large enough that a pass is still shared out among threads (PARALLEL_WORK).
PASS = 4096


@dataclass
class RaceResult(Prequential):
    """The race's prequential figures of one batch, and every member's.

    The race's own (``loss``, ``correct``, ``predicted``...) score each row with
    the prediction of the member that led before it, ``leaders[n]``; ``leader``
    is the member leading after the batch. The ``member_*`` arrays have a row
    (or entry) per member: :meth:`member` gives one member's figures as it
    would report them alone. ``drifts`` are the drifts detected in the batch
    (rows, the race's version at each, the members re-seeded there).
    """

    leaders: np.ndarray  # (n,) the member that scored each row
    leader: int
    member_sse: np.ndarray  # (members,) ΣFE² over the batch
    member_loss: np.ndarray  # (members,) summed loss
    member_correct: np.ndarray  # (members,) rows classified right
    member_sample_loss: np.ndarray  # (members, n)
    member_predicted: np.ndarray  # (members, n)
    drifts: Drifts

    @classmethod
    def joined(cls, parts: list["RaceResult"]) -> "RaceResult":
        """The figures of consecutive batches as those of one."""
        if len(parts) == 1:
            return parts[0]
        starts = np.cumsum([0] + [p.n for p in parts[:-1]])

        def cat(name: str, axis: int = 0) -> np.ndarray:
            return np.concatenate([getattr(p, name) for p in parts], axis=axis)

        def total(name: str):
            return sum(getattr(p, name) for p in parts)
        drifts = Drifts(np.concatenate([p.drifts.rows + at for p, at in zip(parts, starts)]),
                        np.concatenate([p.drifts.slots for p in parts]),
                        np.concatenate([p.drifts.seen for p in parts]),
                        sum((p.drifts.reseeded for p in parts), ()))
        return cls(n=total("n"), sse=total("sse"), loss=total("loss"), correct=total("correct"),
                   sample_loss=cat("sample_loss"), predicted=cat("predicted"),
                   actual=cat("actual"), leaders=cat("leaders"), leader=parts[-1].leader,
                   member_sse=total("member_sse"), member_loss=total("member_loss"),
                   member_correct=total("member_correct"),
                   member_sample_loss=cat("member_sample_loss", 1),
                   member_predicted=cat("member_predicted", 1), drifts=drifts)

    def member(self, k: int) -> Prequential:
        """Member ``k``'s figures of the batch."""
        return Prequential(n=self.n, sse=float(self.member_sse[k]), loss=float(self.member_loss[k]),
                           correct=int(self.member_correct[k]),
                           sample_loss=self.member_sample_loss[k],
                           predicted=self.member_predicted[k], actual=self.actual)


class Race:
    """Several networks over the same inputs, each trained on every sample; the best one leads.

    Parameters
    ----------
    members
        The networks. They must agree on inputs, outputs, activations, loss,
        bias, dtype and input scaling; depths, widths, learning rates, seeds and
        initialisations may differ. The race trains them in place.
    window
        The members are ranked on their prequential figures over a decaying
        window: a sample ``t`` samples old weighs ``(1 - 1/window)**t``.
    by
        ``loss`` (lowest windowed loss leads) or ``accuracy`` (highest windowed
        accuracy, then lowest loss); a member whose windowed loss is NaN (it
        diverged) ranks last either way. A member leads until another is
        strictly better.
    threads
        Threads the members are trained in, each taking a group of members of
        about equal work (``None``: ``THREADS``, one per usable core). Members
        are independent given the rows, so the results are the same bits
        whatever the number. A batch of fewer than ``PARALLEL_WORK /
        work_per_row`` rows is trained in one thread (``work_per_row``: the
        members' work per row, about, in multiply-adds).
    drift
        The test that watches the race's prequential errors (each row scored by
        the member leading before it) for concept drift; ``None``: none. A race
        with ``identity`` outputs (regression) has no 0/1 error stream and is
        not watched.
    reseed
        How many members to re-seed on each drift: the weakest by the ranking
        (never the leader, so at most all but one). A re-seeded member is
        re-initialised right after the row where the drift was detected, the
        race's version ``v``, however the rows were batched: its weights and
        biases become those of a fresh member built with
        ``seed=reseed_seed(member.seed, v)``; it keeps its input statistics
        (shared with the other members) and its windowed figures, from which it
        climbs. ``0``: drifts are only reported.

    Examples
    --------
    >>> import numpy as np
    >>> race = Race.grid(3, 1, by="loss", seed=0)
    >>> race
    Race(6 members, window=1000, by='loss', leader=0)
    >>> X = np.random.default_rng(1).uniform(-1, 1, (3000, 3))
    >>> result = race.learn(X, (X[:, 0] >= 0).astype(int))
    >>> race.leader, race.leader_net.layers, race.leader_net.lr, result.accuracy > 0.9
    (3, [3, 32, 1], 1.0, True)
    >>> race.predict_class([[0.5, 0.1, -0.3], [-0.5, 0.2, 0.9]])
    array([1, 0])
    """

    def __init__(self, members: Sequence[MLP], window: int = WINDOW, by: str = "loss",
                 threads: int | None = None, drift: PageHinkley | None = DRIFT,
                 reseed: int = RESEED) -> None:
        members = list(members)
        if not members or not all(isinstance(m, MLP) for m in members):
            raise TypeError(f"members={members!r}; expected a non-empty sequence of MLP")
        for k, m in enumerate(members):
            for name in SHARED:
                if getattr(m, name) != getattr(members[0], name):
                    raise ValueError(f"member {k} has {name}={getattr(m, name)!r} and member 0 "
                                     f"{getattr(members[0], name)!r}; a race's members must agree "
                                     f"on {', '.join(SHARED)}")
            if any(m is other for other in members[:k]):
                raise ValueError(f"member {k} appears twice; pass distinct networks (copy.deepcopy)")
        if int(window) != window or window < 1:
            raise ValueError(f"window={window}; expected a positive whole number of samples")
        _choose("by", by, BY)
        if drift is not None and not isinstance(drift, PageHinkley):
            raise TypeError(f"drift={drift!r}; expected a PageHinkley (its settings), or None")
        if int(reseed) != reseed or reseed < 0:
            raise ValueError(f"reseed={reseed}; expected a whole number >= 0 of members to "
                             "re-seed on a drift")
        if reseed and drift is None:
            raise ValueError(f"reseed={reseed} reacts to drifts, and drift=None detects none; "
                             "pass drift=PageHinkley() or reseed=0")
        # A choice of threads travels with the race (its state, so copies and checkpoints);
        # the default stays one per core of whichever machine runs it.
        self._threads_chosen = threads
        threads = THREADS if threads is None else threads
        if int(threads) != threads or threads < 1:
            raise ValueError(f"threads={threads}; expected a positive whole number (None: one per "
                             "core)")
        self.members, self.window, self.by = members, int(window), by
        self.threads = int(threads)
        self.leader = 0
        # Decaying-window means per member: row 0 loss, row 1 accuracy; _weight is the
        # sum of the window's weights over the samples seen (0: none yet).
        self._figures = np.zeros((2, len(members)))
        self._weight = 0.0
        first = members[0]
        # A tuple's length is part of its Numba type, so the kernel takes the members of one
        # depth at a time: per depth, its members (race indices) and their views.
        depths = sorted({len(m.layers) for m in members})
        self._depths = [np.array([k for k, m in enumerate(members) if len(m.layers) == d],
                                 dtype=np.int64) for d in depths]
        self._views = [(tuple(members[k]._Ws for k in ks), tuple(members[k]._bs for k in ks),
                        tuple(members[k]._scaler for k in ks),
                        np.array([members[k].lr for k in ks], dtype=first.dtype))
                       for ks in self._depths]
        self._scalers = tuple(m._scaler for m in members)  # every member's, for standardise_shared
        # One kernel per depth; members with one hidden layer (3 layer sizes) get their own loop.
        self._train = [kernels.racer(ACTIVATIONS[first.activation], OUTPUTS[first.output],
                                     LOSSES[first.loss], first.scale is not None, d == 3,
                                     first.n_outputs == 1, first.dtype) for d in depths]
        # The members in groups of about equal work, largest first, one group per thread; each
        # group with its own work buffers. A group's members of each depth, as indices into
        # that depth's views: _plan[g][d]; a batch trained serially takes every member of a
        # depth in one call: _serial[d].
        work = [_member_work(m) for m in members]
        self._groups = _groups(work, min(self.threads, len(members)))
        self._plan = [[np.flatnonzero(np.isin(ks, group)) for ks in self._depths]
                      for group in self._groups]
        self._serial = [np.arange(len(ks), dtype=np.int64) for ks in self._depths]
        shape = (max(depths), max(max(m.layers) for m in members))
        self._buffers = [tuple(np.zeros(shape, dtype=first.dtype) for _ in range(3))
                         for _ in self._groups]
        self.work_per_row = sum(work)  # what a batch's rows times this is, for PARALLEL_WORK
        # The race's own prequential totals: each sample scored by the member leading before it.
        self.samples = 0
        self.sse_total = 0.0
        self.loss_total = 0.0
        self.correct_total = 0
        # Drift: one test on the race's own errors; the latest drifts (version, members
        # re-seeded) and how many there were.
        self.reseed = int(reseed)
        self._drift = drift
        self.detector = (DriftDetector(drift) if drift is not None and first.output != "identity"
                         else None)
        self.recent_drifts: list[dict] = []
        self.drift_count = 0

    @classmethod
    def grid(cls, inputs: int, outputs: int, lrs: Sequence[float] | None = None,
             hidden: Sequence[int | Sequence[int]] | None = None,
             linear: Sequence[float] | None = None, activation: str = "logistic",
             output: str | None = None, loss: str | None = None, scale: str | None = "standard",
             init: str = "glorot", bias: bool = True, seed: int | None = None,
             dtype: str = "float64", window: int = WINDOW, by: str | None = None,
             threads: int | None = None, drift: PageHinkley | None = DRIFT,
             reseed: int = RESEED) -> "Race":
        """A race of one member per hidden width and learning rate (widths outer, lrs inner),
        then one linear member (no hidden layer) per learning rate in ``linear``.

        ``hidden`` holds one width per member shape, or a sequence of widths
        for deeper members; ``linear=()`` leaves the linear members out. By
        default the members standardise their inputs and are built for
        classification: ``softmax`` outputs with cross-entropy for several
        outputs, ``logistic`` with cross-entropy for one (pass
        ``output="identity", loss="sse"`` for regression). ``by`` defaults to
        ``accuracy`` for classification (``logistic`` or ``softmax`` outputs)
        and ``loss`` for regression.

        ``lrs``, ``hidden`` and ``linear`` left out are the defaults of the
        outputs: for classification widths ``HIDDEN`` (8, 32) x lrs ``LRS``
        (0.2, 1) and linear members at ``LINEAR_LRS`` (0.005, 0.05), six
        members; for regression (``identity`` outputs) widths
        ``REGRESSION_HIDDEN`` (8, 16) x ``REGRESSION_LRS`` (0.02) and one
        linear member at ``REGRESSION_LINEAR_LRS`` (0.02), three members:
        SSE on targets far from 0 takes smaller steps, and these three score
        a lower MAE than the classifier grid on four of the quality suite's
        five regression streams.

        Examples
        --------
        >>> race = Race.grid(64, 10)
        >>> len(race.members), race.by
        (6, 'accuracy')
        >>> race.members[2]
        MLP([64, 32, 10], activation='logistic', output='softmax', loss='cross_entropy', lr=0.2, bias=True, dtype='float64', scale='standard')
        >>> race.members[-1].layers, race.members[-1].lr
        ([64, 10], 0.05)
        >>> [(m.layers, m.lr) for m in Race.grid(5, 1, output="identity", loss="sse").members]
        [([5, 8, 1], 0.02), ([5, 16, 1], 0.02), ([5, 1], 0.02)]
        """
        if output is None:
            output = "softmax" if outputs > 1 else "logistic"
        classifier = output in ("softmax", "logistic")
        if loss is None:
            loss = "cross_entropy" if classifier else "sse"
        if by is None:
            by = "accuracy" if classifier else "loss"
        defaults = ((LRS, HIDDEN, LINEAR_LRS) if classifier else
                    (REGRESSION_LRS, REGRESSION_HIDDEN, REGRESSION_LINEAR_LRS))
        lrs, hidden, linear = (default if given is None else given
                               for given, default in zip((lrs, hidden, linear), defaults))
        shapes = [([h] if np.isscalar(h) else list(h), lr) for h, lr in product(hidden, lrs)]
        members = [MLP([inputs, *widths, outputs], activation=activation, output=output, loss=loss,
                       lr=lr, bias=bias, init=init, seed=seed, dtype=dtype, scale=scale)
                   for widths, lr in shapes + [([], lr) for lr in linear]]
        return cls(members, window=window, by=by, threads=threads, drift=drift, reseed=reseed)

    def __repr__(self) -> str:
        return (f"Race({len(self.members)} members, window={self.window}, by={self.by!r}, "
                f"leader={self.leader})")

    # -- the leader, and what a caller of one network reads from it ----------------------------

    def diverged(self) -> bool:
        """Whether the member served, the leader, has diverged (see :meth:`MLP.diverged`).
        A member that diverges while another leads ranks last from then on (its loss is
        NaN) and stays as it would alone: the race goes on without it."""
        return self.leader_net.diverged()

    @property
    def leader_net(self) -> MLP:
        """The leading member: the one ``predict`` uses."""
        return self.members[self.leader]

    @property
    def n_inputs(self) -> int:
        return self.members[0].n_inputs

    @property
    def n_outputs(self) -> int:
        return self.members[0].n_outputs

    @property
    def layers(self) -> list[int]:
        """The leader's layer sizes."""
        return self.leader_net.layers

    @property
    def activation(self) -> str:
        return self.members[0].activation

    @property
    def output(self) -> str:
        return self.members[0].output

    @property
    def weights(self) -> list[np.ndarray]:
        """The leader's weights (views into its parameters)."""
        return self.leader_net.weights

    @property
    def biases(self) -> list[np.ndarray]:
        """The leader's biases."""
        return self.leader_net.biases

    @property
    def scaler_mean(self) -> np.ndarray | None:
        """The leader's input means (every member has seen the same inputs)."""
        return self.leader_net.scaler_mean

    @property
    def scaler_var(self) -> np.ndarray | None:
        """The leader's input variances."""
        return self.leader_net.scaler_var

    @property
    def ew_loss(self) -> np.ndarray:
        """Each member's prequential loss over the decaying window (NaN before any sample)."""
        return self._figures[0].copy() if self._weight else np.full(len(self.members), np.nan)

    @property
    def ew_accuracy(self) -> np.ndarray:
        """Each member's prequential accuracy over the decaying window (NaN before any sample)."""
        return self._figures[1].copy() if self._weight else np.full(len(self.members), np.nan)

    # -- training and prediction ---------------------------------------------------------------

    def learn(self, X, y) -> RaceResult:
        """Train every member on the rows of ``X`` in order, one gradient step per row each.

        ``y`` as for :meth:`MLP.learn`. Everything is checked before the first
        update. Returns the race's and every member's prequential figures.
        """
        X = self.check_inputs(X)
        return self.learn_checked(X, self.check_targets(y, len(X)))

    def learn_checked(self, X: np.ndarray, Y: np.ndarray) -> RaceResult:
        """:meth:`learn` for arrays that :meth:`check_inputs` and :meth:`check_targets` returned."""
        if not (self.reseed and self.detector):
            return self._react(self._learn(X, Y))
        # Members re-seeded on a drift start afresh after its row, however the rows were
        # batched: a pass that finds a drift before its last row is undone and learned again
        # up to that row, then the race reacts and goes on from the next.
        parts, start = [], 0
        while start < len(X) or not parts:
            stop = min(len(X), start + PASS)
            saved = self.mark()
            part = self._learn(X[start:stop], Y[start:stop])
            if len(part.drifts) and part.drifts.rows[0] < part.n - 1:
                self.rewind(saved)
                stop = start + int(part.drifts.rows[0]) + 1
                part = self._learn(X[start:stop], Y[start:stop])
            parts.append(self._react(part))
            start = stop
        return RaceResult.joined(parts)

    def _learn(self, X: np.ndarray, Y: np.ndarray) -> RaceResult:
        """Train every member on the rows, rank them, and run the drift test (no reaction)."""
        n, K = len(X), len(self.members)
        sample_loss, sample_sse = np.empty((K, n)), np.empty((K, n))
        predicted = np.empty((K, n), dtype=np.int64)
        actual, leaders = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)
        race_loss, race_predicted = np.empty(n), np.empty(n, dtype=np.int64)
        totals = np.empty((3, K + 1))  # ΣFE², loss, correct rows: each member's, then the race's
        counts = np.array([m.scaler_count for m in self.members], dtype=np.int64)
        if self.members[0].scale:
            Z = np.empty_like(X)  # the batch as the members that share statistics see it
            shared = kernels.standardise_shared(X, self._scalers, counts, Z)
        else:
            Z, shared = X, np.zeros(K, dtype=np.bool_)

        def train(plan: list[np.ndarray], buffers: tuple, actual: np.ndarray) -> None:
            for d, which in enumerate(plan):
                if len(which):  # one compiled call for these members of this depth
                    Wss, bss, scalers, lrs = self._views[d]
                    self._train[d](which, self._depths[d], Wss, bss, self.members[0].bias, lrs,
                                   X, Z, Y, scalers, counts, shared, *buffers,
                                   sample_loss, sample_sse, predicted, actual, totals)

        if len(self._groups) > 1 and n * self.work_per_row >= PARALLEL_WORK:
            # Every group writes the same classes of the targets: the others into copies.
            others = [POOL.submit(train, self._plan[g], self._buffers[g], np.empty_like(actual))
                      for g in range(1, len(self._groups))]
            try:
                train(self._plan[0], self._buffers[0], actual)
            finally:  # no group still writing into the members once this returns or raises
                wait(others)
            for other in others:
                other.result()  # a group's error, if any, raised here
        else:
            train(self._serial, self._buffers[0], actual)
        self._weight, leader = kernels.rank(sample_loss, sample_sse, predicted, actual,
                                            self._figures, self._weight, 1.0 / self.window,
                                            self.leader, BY[self.by], leaders, race_loss,
                                            race_predicted, totals)
        self.leader = int(leader)
        sse, loss, correct = totals.tolist()
        for k, member in enumerate(self.members):
            member._add(n, sse[k], loss[k], int(correct[k]))
        self._add(n, sse[K], loss[K], int(correct[K]))
        drifts = (NO_DRIFTS if self.detector is None else
                  self.detector.update_checked(race_predicted, actual, np.zeros(n, np.int64)))
        return RaceResult(n=n, sse=sse[K], loss=loss[K], correct=int(correct[K]),
                          sample_loss=race_loss, predicted=race_predicted, actual=actual,
                          leaders=leaders, leader=self.leader, member_sse=totals[0, :K],
                          member_loss=totals[1, :K], member_correct=totals[2, :K].astype(np.int64),
                          member_sample_loss=sample_loss, member_predicted=predicted, drifts=drifts)

    def _react(self, result: RaceResult) -> RaceResult:
        """Keep the batch's drifts, re-seeding at each (see ``reseed``); the result with the
        members re-seeded. With re-seeding, a drift is only ever at a batch's last row."""
        if not len(result.drifts):
            return result
        reseeded = []
        for version in result.drifts.seen.tolist():
            reseeded.append(self._reseed(version))
            self.recent_drifts = (self.recent_drifts + [
                {"version": version, "reseeded": list(reseeded[-1])}])[-RECENT_DRIFTS:]
            self.drift_count += 1
        return replace(result, drifts=replace(result.drifts, reseeded=tuple(reseeded)))

    def _reseed(self, version: int) -> tuple[int, ...]:
        """Re-initialise the ``reseed`` weakest members (by the ranking, never the leader) as
        fresh members of seed ``reseed_seed(seed, version)`` would start; which they were."""
        if not self.reseed:
            return ()
        loss = np.where(np.isnan(self._figures[0]), np.inf, self._figures[0])
        keys = (loss,) if self.by == "loss" else (loss, -self._figures[1])
        order = np.lexsort(keys)  # best first (the last key sorts first; ties by member)
        order = order[order != self.leader]
        weakest = sorted(order[len(order) - min(self.reseed, len(order)):].tolist())
        for k in weakest:
            member = self.members[k]
            member.params[...] = 0.0  # biases start at zero, as in MLP
            initialise(member.weights, member.init, reseed_seed(member.seed, version))
        return tuple(weakest)

    def mark(self) -> tuple:
        """What learning changes (every member's :meth:`MLP.mark`, the ranking, the drift
        test and its record), for :meth:`rewind`: far cheaper than :meth:`state`."""
        return ([m.mark() for m in self.members], self._figures.copy(), self._weight,
                self.leader, self.samples, self.sse_total, self.loss_total, self.correct_total,
                None if self.detector is None else self.detector.state.copy(),
                list(self.recent_drifts), self.drift_count)

    def rewind(self, mark: tuple) -> None:
        """Undo everything learned since ``mark`` (a :meth:`mark`), in place."""
        (members, figures, self._weight, self.leader, self.samples, self.sse_total,
         self.loss_total, self.correct_total, detector, recent, self.drift_count) = mark
        self.recent_drifts = list(recent)
        for m, saved in zip(self.members, members):
            m.rewind(saved)
        self._figures[...] = figures
        if detector is not None:
            self.detector.state = detector.copy()  # the mark stays as it was, to rewind again

    def _add(self, n: int, sse: float, loss: float, correct: int) -> None:
        """Count a learned batch of ``n`` rows in the race's running totals."""
        self.samples += n
        self.sse_total += sse
        self.loss_total += loss
        self.correct_total += correct

    def predict(self, X) -> np.ndarray:
        """The leader's outputs for every row, shape ``(n, outputs)``; no training."""
        return self.leader_net.predict(X)

    def predict_class(self, X) -> np.ndarray:
        """The leader's class for every row (see :meth:`MLP.predict_class`)."""
        return self.leader_net.predict_class(X)

    def check_inputs(self, X) -> np.ndarray:
        """See :meth:`MLP.check_inputs`; every member takes the same inputs."""
        return self.members[0].check_inputs(X)

    def check_targets(self, y, n: int) -> np.ndarray:
        """See :meth:`MLP.check_targets`."""
        return self.members[0].check_targets(y, n)

    def check_many(self, messages: list[tuple[np.ndarray, np.ndarray]]):
        """See :meth:`MLP.check_many`."""
        return self.members[0].check_many(messages)

    # -- reporting and persistence -------------------------------------------------------------

    def summary(self) -> dict:
        """Every member's figures and the leader, as plain numbers (JSON- and msgpack-able).

        Per member: ``lr``, ``layers``, ``ew_loss`` and ``ew_accuracy`` (over the
        decaying window, NaN before any sample), ``loss`` and ``accuracy`` (mean
        since the start). A race watched for drift also gives ``drifts`` (how many
        were detected), ``drift_versions`` (the race's version at each of the latest)
        and ``reseeded`` (the members re-seeded at each of those).
        """
        ew_loss, ew_accuracy = self.ew_loss, self.ew_accuracy
        members = [{"member": k, "layers": m.layers, "lr": m.lr,
                    "ew_loss": float(ew_loss[k]), "ew_accuracy": float(ew_accuracy[k]),
                    "loss": m.loss_total / m.samples if m.samples else float("nan"),
                    "accuracy": m.correct_total / m.samples if m.samples else float("nan")}
                   for k, m in enumerate(self.members)]
        summary = {"leader": self.leader, "by": self.by, "window": self.window,
                   "samples": self.samples, "members": members}
        if self.detector is not None:
            summary.update(drifts=self.drift_count,
                           drift_versions=[d["version"] for d in self.recent_drifts],
                           reseeded=[list(d["reseeded"]) for d in self.recent_drifts])
        return summary

    def spec(self) -> dict:
        """The members' constructor arguments and the race's, enough to rebuild it untrained."""
        return dict(members=[m.spec() for m in self.members], window=self.window, by=self.by,
                    drift=_settings(self._drift), reseed=self.reseed)

    def state(self) -> dict:
        """Everything needed to continue exactly: every member's state, the window's figures, the leader."""
        state = dict(kind="race", members=[m.state() for m in self.members],
                     window=self.window, by=self.by, threads=self._threads_chosen,
                     leader=self.leader, weight=self._weight, figures=self._figures.copy(),
                     samples=self.samples, sse_total=self.sse_total, loss_total=self.loss_total,
                     correct_total=self.correct_total, drift=_settings(self._drift),
                     reseed=self.reseed)
        if self.detector is not None:
            state.update(detector=self.detector.state.copy(), drift_count=self.drift_count,
                         recent_drifts=copy.deepcopy(self.recent_drifts))
        return state

    @classmethod
    def from_state(cls, state: dict) -> "Race":
        """Rebuild a race from :meth:`state`."""
        drift = state.get("drift", vars(DRIFT))  # a race saved before races watched drift
        race = cls([MLP.from_state(s) for s in state["members"]], window=state["window"],
                   by=state["by"], threads=state.get("threads"),
                   drift=None if drift is None else PageHinkley(**drift),
                   reseed=state.get("reseed", 0))
        figures = np.asarray(state["figures"], dtype=np.float64)
        if figures.shape != race._figures.shape:
            raise ValueError(f"figures of shape {figures.shape} do not fit a race of "
                             f"{len(race.members)} members, which needs {race._figures.shape}")
        leader = int(state["leader"])
        if not 0 <= leader < len(race.members):
            raise ValueError(f"leader {leader} is not a member; the race has {len(race.members)}")
        race._figures[...] = figures
        race._weight, race.leader = float(state["weight"]), leader
        race.samples = int(state["samples"])
        race.sse_total = float(state["sse_total"])
        race.loss_total = float(state["loss_total"])
        race.correct_total = int(state["correct_total"])
        if race.detector is not None:
            if "detector" in state:  # the test goes on from its statistics, as if never stopped
                race.detector = DriftDetector.from_state({"settings": drift,
                                                          "state": state["detector"]})
                race.recent_drifts = [{"version": int(d["version"]),
                                       "reseeded": [int(k) for k in d["reseeded"]]}
                                      for d in state["recent_drifts"]]
                race.drift_count = int(state["drift_count"])
            else:
                race.detector.state[:, SEEN] = race.samples
        return race

    # copy.deepcopy and pickle go through the state, like MLP's.
    def __getstate__(self) -> dict:
        return self.state()

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(Race.from_state(state).__dict__)

    def save(self, path: str | os.PathLike, extra: dict | None = None) -> None:
        """Write the race (and ``extra``, any JSON-able dict) to an ``.npz`` file, atomically.

        :func:`streammlp.read` reads it back, like a network's.
        """
        checkpoint.write(path, self.state(), extra)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Race":
        """Read a race written by :meth:`save`."""
        race = read(path)[0]
        if not isinstance(race, Race):
            raise ValueError(f"{os.fspath(path)} holds one network, not a race; read it with MLP.load")
        return race


POOL: ThreadPoolExecutor  # see _new_pool


def _new_pool() -> None:
    """The threads every race of this process hands its other member groups to: one pool,
    however many races (a keyed service may hold thousands). Its threads start on the first
    batch shared out, and stay. A forked child has none of its parent's threads: a new pool."""
    global POOL
    POOL = ThreadPoolExecutor(thread_name_prefix="streammlp-race")


_new_pool()
os.register_at_fork(after_in_child=_new_pool)


def _settings(drift: PageHinkley | None) -> dict | None:
    """A drift test's settings as a plain dict (None: no test), for specs and files."""
    return None if drift is None else vars(drift).copy()


def reseed_seed(seed: int | None, version: int) -> int:
    """The seed a member of seed ``seed`` is re-initialised from after a drift detected at the
    race's ``version`` (``seed`` None counts as 0): the first 64-bit word of NumPy's
    ``SeedSequence([seed, version])``.

    >>> reseed_seed(0, 25_318) == reseed_seed(None, 25_318) != reseed_seed(0, 25_319)
    True
    """
    return int(np.random.SeedSequence([seed or 0, version]).generate_state(1, np.uint64)[0])


def _member_work(member: MLP) -> int:
    """A member's work per row, in multiply-adds, about: its parameters, ``UNIT_WORK`` per unit
    (an activation) and ``ROW_WORK`` (the row's scaling, error and records)."""
    return member.params.size + UNIT_WORK * sum(member.layers[1:]) + ROW_WORK


def _groups(work: list[int], count: int) -> list[np.ndarray]:
    """Member indices in ``count`` groups of about equal total ``work``: largest first, each to the
    lightest group so far (ties to the first), every group in member order."""
    groups, loads = [[] for _ in range(count)], [0] * count
    for k in sorted(range(len(work)), key=lambda k: -work[k]):
        g = loads.index(min(loads))
        groups[g].append(k)
        loads[g] += work[k]
    return [np.array(sorted(g), dtype=np.int64) for g in groups]
