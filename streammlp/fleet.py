"""A fleet: one model per key (a sensor, a channel, a machine), all of one architecture.

Each model learns its own rows in order, one exact gradient step each, as it
would alone: ``Fleet.learn(keys, X, y)`` gives every model the same weights as
``MLP.learn`` on that key's rows. The models' parameters live in one
``(models, parameters)`` buffer and a batch of interleaved rows is trained in
one compiled call (``kernels.fleet_learner``), so many small models train at
nearly the speed of one. :class:`RaceFleet` does the same for a
:class:`~streammlp.race.Race` per key, one call per model.

Model ``key`` starts from the weights of seed :func:`model_seed` ``(seed, key)``,
the same on every machine and after every restart, so any model's run can be
reproduced in-process with ``MLP(..., seed=model_seed(seed, key))``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from . import kernels
from .drift import NO_DRIFTS, Drifts
from .keytable import KeyTable
from .network import ACTIVATIONS, LOSSES, MLP, OUTPUTS, InputError, Prequential, initialise
from .protocol import KeySpans, check_key
from .race import Race

WINDOW = 1000  # samples over which each model's figures are exponentially weighted


def model_seed(seed: int | None, key: str) -> int:
    """The seed of model ``key``'s initial weights: the first 8 bytes, little-endian, of
    BLAKE2b over ``f"{seed}/{key}"`` (``seed`` None counts as 0).

    >>> model_seed(0, "sensor-1") == model_seed(None, "sensor-1") != model_seed(1, "sensor-1")
    True
    """
    digest = hashlib.blake2b(f"{seed or 0}/{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


@dataclass
class FleetResult(Prequential):
    """The prequential figures of the rows a fleet kept, and which rows it undid.

    A model that a call leaves diverged (a parameter non-finite; a race: its
    leader's) is restored to its state from before the call; its rows of the
    call are ``undone`` (a bool per row of the call, or None when nothing was)
    and count in no figure here: the
    per-row arrays hold the kept rows, in order. A :class:`RaceFleet`'s races
    watch themselves for drift: their ``drifts`` (row of the call, slot,
    version and members re-seeded of each, in row order; None for a
    :class:`Fleet`, whose models are watched by whoever trains them).
    """

    undone: np.ndarray | None = None
    drifts: Drifts | None = None

    @classmethod
    def of(cls, sse: float, sample_loss: np.ndarray, predicted: np.ndarray, actual: np.ndarray,
           undone: np.ndarray, drifts: Drifts | None = None) -> "FleetResult":
        if undone.any():
            kept = ~undone
            sample_loss, predicted, actual = sample_loss[kept], predicted[kept], actual[kept]
        else:
            undone = None
        return cls(n=len(sample_loss), sse=sse, loss=float(sample_loss.sum()),
                   correct=int(np.count_nonzero(predicted == actual)), sample_loss=sample_loss,
                   predicted=predicted, actual=actual, undone=undone, drifts=drifts)


@dataclass(frozen=True)
class ModelView:
    """One model of a fleet as the ``weights`` message reads it: views, no copies."""

    weights: list[np.ndarray]
    biases: list[np.ndarray]
    activation: str
    output: str
    scaler_mean: np.ndarray | None
    scaler_var: np.ndarray | None
    leader: int | None = None


class _Keys:
    """What both fleets share: keys and slots, creation, the checks, per-model figures."""

    def __init__(self, template: MLP | Race, seed: int | None, window: int, max_models: int | None):
        self.template, self.seed, self.window, self.max_models = template, seed, window, max_models
        self.keys: list[str] = []
        self.slots: dict[str, int] = {}  # key -> slot, for keys as str ...
        self.table = KeyTable()  # ... and as the bytes of a drain's frames (``find``)

    def __len__(self) -> int:
        return len(self.keys)

    def __contains__(self, key: str) -> bool:
        return key in self.slots

    def slot(self, key: str) -> int:
        """The slot of model ``key``, created from the template if new; ``InputError``
        (``too_many_models``) when ``max_models`` are held already."""
        slot = self.slots.get(key)
        if slot is None:
            check_key(key)
            if self.max_models is not None and len(self.keys) >= self.max_models:
                raise InputError("too_many_models", f"model {key!r} would be model "
                                 f"{len(self.keys) + 1:,}; this fleet holds at most "
                                 f"{self.max_models:,} (raise --max-models)")
            slot = self.slots[key] = len(self.keys)
            self.keys.append(key)
            self.table.add(key)
            self._add(key)
        return slot

    def find(self, keys: KeySpans) -> np.ndarray:
        """The slot of each key of a drain's frames, found from their bytes in one compiled
        call; -1 for a key that has no model yet (``slot`` creates it)."""
        return self.table.lookup(keys.data, keys.firsts, keys.ends)

    def _restore_keys(self, keys: list[str]) -> None:
        """The keys of a checkpoint, in slot order (their models' state is restored apart)."""
        self.keys, self.slots = list(keys), {k: s for s, k in enumerate(keys)}
        self.table = KeyTable()
        self.table.extend(self.keys)

    def check_inputs(self, X) -> np.ndarray:
        return self.template.check_inputs(X)

    def check_targets(self, y, n: int) -> np.ndarray:
        return self.template.check_targets(y, n)

    def check_many(self, messages):
        return self.template.check_many(messages)

    @property
    def n_inputs(self) -> int:
        return self.template.n_inputs

    @property
    def n_outputs(self) -> int:
        return self.template.n_outputs

    def learn(self, keys: Sequence[str], X, y) -> FleetResult:
        """Train row ``n`` of ``X`` on model ``keys[n]``, in order; everything checked first.

        A model that the rows leave non-finite is restored (see :class:`FleetResult`)."""
        X = self.check_inputs(X)
        Y = self.check_targets(y, len(X))
        if len(keys) != len(X):
            raise InputError("shape", f"{len(keys)} keys for {len(X)} rows; pass one key per row")
        for key in set(keys):
            check_key(key)
        return self.learn_checked(X, Y, np.array([self.slot(k) for k in keys], dtype=np.int64))


class Fleet(_Keys):
    """Networks of one architecture, one per key, parameters in one buffer.

    Parameters
    ----------
    template
        An untrained :class:`MLP` whose spec (not weights) every model takes.
    seed
        Model ``key`` starts from ``model_seed(seed, key)``.
    window
        Each model's ``ew_loss`` and ``ew_accuracy`` weigh a sample ``t`` rows old
        by ``(1 - 1/window)**t``.
    max_models
        Refuse new keys beyond this many (``None``: no bound).

    Examples
    --------
    >>> import numpy as np
    >>> fleet = Fleet(MLP([3, 4, 1], lr=1.0, bias=False), seed=0)
    >>> X = np.random.default_rng(1).uniform(-1, 1, (4, 3))
    >>> result = fleet.learn(["a", "b", "a", "c"], X, X[:, 0] >= 0)
    >>> len(fleet), fleet.figures(fleet.slot("a"))["samples"]
    (3, 2)
    >>> alone = MLP([3, 4, 1], lr=1.0, bias=False, seed=model_seed(0, "a"))
    >>> _ = alone.learn(X[[0, 2]], X[[0, 2], 0] >= 0)
    >>> np.array_equal(alone.params, fleet.net("a").params)
    True
    """

    def __init__(self, template: MLP, seed: int | None = None, window: int = WINDOW,
                 max_models: int | None = None) -> None:
        if not isinstance(template, MLP):
            raise TypeError(f"template={template!r}; expected an MLP (a Race per key: RaceFleet)")
        super().__init__(template, seed, window, max_models)
        self.spec = {k: v for k, v in template.spec().items() if k != "seed"}
        # The work model: its checks, learning rate and work buffers serve every model (each
        # trained on views of its own row of params).
        self._work = MLP(**self.spec)
        P, d = self._work.params.size, self._work._scaler.shape[1]
        self.params = np.zeros((0, P), dtype=self._work.params.dtype)
        self.scalers = np.zeros((0, 2, d))
        self.samples = np.zeros(0, dtype=np.int64)
        self.loss_totals = np.zeros(0)
        self.correct_totals = np.zeros(0, dtype=np.int64)
        self.ew_loss, self.ew_accuracy = np.zeros(0), np.zeros(0)
        self._counts = np.zeros(0, dtype=np.int64)
        w = self._work
        self._shapes = tuple(W.shape for W in w.weights)
        self._fleet = kernels.fleet_learner(ACTIVATIONS[w.activation], OUTPUTS[w.output],
                                            LOSSES[w.loss], w.scale is not None,
                                            len(w.layers) == 3, w.n_outputs == 1, w.dtype)

    def __repr__(self) -> str:
        return f"Fleet({len(self)} models of {self._work!r})"

    _ARRAYS = ("params", "scalers", "samples", "loss_totals", "correct_totals", "ew_loss",
               "ew_accuracy")

    def _add(self, key: str) -> None:
        """Room for one more model (capacity doubles), then its initial state."""
        n = len(self.keys)
        if n > len(self.params):
            for name in self._ARRAYS:
                old = getattr(self, name)
                new = np.zeros((max(2 * len(old), 16),) + old.shape[1:], dtype=old.dtype)
                new[:len(old)] = old
                setattr(self, name, new)
        s = n - 1
        self.params[s] = 0.0  # biases start at 0
        initialise(self.view(s).weights, self.spec["init"], model_seed(self.seed, key))
        self.scalers[s] = 0.0
        self.samples[s] = self.correct_totals[s] = 0
        self.loss_totals[s] = 0.0
        self.ew_loss[s] = self.ew_accuracy[s] = np.nan

    def learn_checked(self, X: np.ndarray, Y: np.ndarray, slots: np.ndarray) -> FleetResult:
        """:meth:`learn` for checked arrays and the rows' slots (int64, one per row), in one
        compiled call (see ``kernels.fleet_learner``)."""
        w = self._work
        n = len(X)
        sample_loss = np.empty(n)
        predicted, actual = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)
        undone = np.empty(n, dtype=np.bool_)
        # The figures of rows trained model by model, before they are put in the rows' order
        # (not touched, so not paged in, when each model's rows are consecutive).
        grouped = np.empty(n), np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)
        s_pre, s_post, delta = w._work
        if len(self._counts) < len(self.params):  # the grouping's scratch, one 0 per model
            self._counts = np.zeros(len(self.params), dtype=np.int64)
        sse = self._fleet(self.params, self.scalers, self._shapes, slots, self._counts, w.bias,
                          w._lr, X, Y, s_pre, s_post, delta, sample_loss,
                          predicted, actual, self.samples, self.loss_totals, self.correct_totals,
                          self.ew_loss, self.ew_accuracy, 1.0 / self.window, w.params, w._scaler,
                          undone, *grouped)
        return FleetResult.of(float(sse), sample_loss, predicted, actual, undone)

    def net(self, key: str) -> MLP:
        """Model ``key`` as a network of its own (a copy)."""
        s = self.slots[key]
        net = MLP(**{**self.spec, "seed": model_seed(self.seed, key)})
        net.params[...] = self.params[s]
        if net.scale:
            net._scaler[...] = self.scalers[s]
            net.scaler_count = int(self.samples[s])
        net.samples, net.correct_total = int(self.samples[s]), int(self.correct_totals[s])
        net.loss_total = float(self.loss_totals[s])
        return net

    def predict(self, slot: int, X) -> np.ndarray:
        """Model ``slot``'s outputs for the rows of ``X``; no training."""
        w = self._work
        w.params[...] = self.params[slot]
        w._scaler[...] = self.scalers[slot]
        w.scaler_count = int(self.samples[slot])
        return w.predict(X)

    def view(self, slot: int) -> ModelView:
        """Model ``slot``'s weights, biases and scaler, as views of the buffers."""
        w, row = self._work, self.params[slot]
        weights, biases, at = [], [], 0
        for W in w.weights:
            weights.append(row[at:at + W.size].reshape(W.shape))
            at += W.size
            biases.append(row[at:at + W.shape[1]])
            at += W.shape[1]
        mean = var = None
        if w.scale:
            count = self.samples[slot]
            mean = self.scalers[slot, 0]
            var = self.scalers[slot, 1] / count if count else np.zeros(w.n_inputs)
        return ModelView(weights, biases, w.activation, w.output, mean, var)

    def figures(self, slot: int) -> dict:
        """Model ``slot``'s prequential figures, as plain numbers."""
        n = int(self.samples[slot])
        return {"model": self.keys[slot], "version": n, "samples": n,
                "loss": float(self.loss_totals[slot]) / n if n else float("nan"),
                "accuracy": int(self.correct_totals[slot]) / n if n else float("nan"),
                "ew_loss": float(self.ew_loss[slot]), "ew_accuracy": float(self.ew_accuracy[slot])}

    def column(self, name: str) -> np.ndarray:
        """One figure of :meth:`figures` (not ``model``) for every model, in slot order."""
        n = len(self.keys)
        samples = self.samples[:n]
        with np.errstate(invalid="ignore", divide="ignore"):
            if name == "loss":
                return self.loss_totals[:n] / samples
            if name == "accuracy":
                return self.correct_totals[:n] / samples
        return getattr(self, {"version": "samples"}.get(name, name))[:n].copy()

    def totals(self) -> tuple[int, float, int]:
        """Samples, summed loss and correct rows over every model."""
        n = len(self.keys)
        return (int(self.samples[:n].sum()), float(self.loss_totals[:n].sum()),
                int(self.correct_totals[:n].sum()))

    # -- persistence -----------------------------------------------------------------------------

    def state(self) -> dict:
        n = len(self.keys)
        return {"kind": "fleet", "spec": self.spec, "seed": self.seed, "window": self.window,
                "keys": list(self.keys),
                **{name: getattr(self, name)[:n].copy() for name in self._ARRAYS}}

    @classmethod
    def from_state(cls, state: dict, max_models: int | None = None) -> "Fleet":
        fleet = cls(MLP(**state["spec"]), seed=state["seed"], window=state["window"],
                    max_models=max_models)
        keys = list(state["keys"])
        n = len(keys)
        for name in cls._ARRAYS:
            old, saved = getattr(fleet, name), np.asarray(state[name])
            if saved.shape[1:] != old.shape[1:] or len(saved) != n:
                raise ValueError(f"fleet {name} of shape {saved.shape} does not fit {n} models "
                                 f"of {fleet._work!r}")
            setattr(fleet, name, saved.astype(old.dtype, copy=True))
        fleet._restore_keys(keys)
        return fleet


class RaceFleet(_Keys):
    """A :class:`~streammlp.race.Race` per key, each built by ``make_race(seed)`` from
    ``model_seed(seed, key)``; trained one call per model of a batch."""

    def __init__(self, make_race, seed: int | None = None, window: int = WINDOW,
                 max_models: int | None = None) -> None:
        super().__init__(make_race(None), seed, window, max_models)
        self.make_race = make_race
        self.races: list[Race] = []
        self.ew_loss: list[float] = []
        self.ew_accuracy: list[float] = []

    def __repr__(self) -> str:
        return f"RaceFleet({len(self)} models of {self.template!r})"

    def _add(self, key: str) -> None:
        self.races.append(self.make_race(model_seed(self.seed, key)))
        self.ew_loss.append(float("nan"))
        self.ew_accuracy.append(float("nan"))

    def learn_checked(self, X: np.ndarray, Y: np.ndarray, slots: np.ndarray) -> FleetResult:
        """Each model's rows in one call of its race; a race left diverged (its leader) is
        undone (see :class:`FleetResult`)."""
        n = len(X)
        sample_loss = np.empty(n)
        predicted, actual = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)
        undone = np.zeros(n, dtype=np.bool_)
        sse, alpha = 0.0, 1.0 / self.window
        found = []  # each race's drifts: (fleet row, slot, version, members re-seeded)
        for s in np.unique(slots):  # each model's rows, in their order
            rows = np.flatnonzero(slots == s)
            race = self.races[s]
            mark = race.mark()
            result = race.learn_checked(X[rows], Y[rows])
            if race.diverged():
                race.rewind(mark)
                undone[rows] = True
                continue
            sample_loss[rows], predicted[rows], actual[rows] = (
                result.sample_loss, result.predicted, result.actual)
            sse += result.sse
            hits = (result.predicted == result.actual).astype(float)
            self.ew_loss[s] = float(kernels.ewma(result.sample_loss, self.ew_loss[s], alpha))
            self.ew_accuracy[s] = float(kernels.ewma(hits, self.ew_accuracy[s], alpha))
            d = result.drifts
            found += zip(rows[d.rows].tolist(), [int(s)] * len(d), d.seen.tolist(), d.reseeded)
        drifts = NO_DRIFTS
        if found:
            at, at_slots, seen, reseeded = zip(*sorted(found))
            drifts = Drifts(*(np.array(v, dtype=np.int64) for v in (at, at_slots, seen)),
                            reseeded)
        return FleetResult.of(sse, sample_loss, predicted, actual, undone, drifts)

    def net(self, key: str) -> Race:
        return self.races[self.slots[key]]

    def predict(self, slot: int, X) -> np.ndarray:
        return self.races[slot].predict(X)

    def view(self, slot: int) -> Race:
        return self.races[slot]  # the weights message reads the leader's views

    def figures(self, slot: int) -> dict:
        race = self.races[slot]
        n = race.samples
        return {"model": self.keys[slot], "version": n, "samples": n,
                "loss": race.loss_total / n if n else float("nan"),
                "accuracy": race.correct_total / n if n else float("nan"),
                "ew_loss": self.ew_loss[slot], "ew_accuracy": self.ew_accuracy[slot],
                "leader": race.leader}

    def column(self, name: str) -> np.ndarray:
        return np.array([self.figures(s)[name] for s in range(len(self.keys))], dtype=float)

    def totals(self) -> tuple[int, float, int]:
        return (sum(r.samples for r in self.races), sum(r.loss_total for r in self.races),
                sum(r.correct_total for r in self.races))

    def state(self) -> dict:
        return {"kind": "race_fleet", "seed": self.seed, "window": self.window,
                "keys": list(self.keys), "races": [r.state() for r in self.races],
                "ew_loss": np.array(self.ew_loss), "ew_accuracy": np.array(self.ew_accuracy)}

    @classmethod
    def from_state(cls, state: dict, make_race, max_models: int | None = None) -> "RaceFleet":
        fleet = cls(make_race, seed=state["seed"], window=state["window"], max_models=max_models)
        fleet._restore_keys(state["keys"])
        fleet.races = [Race.from_state(r) for r in state["races"]]
        fleet.ew_loss = [float(v) for v in state["ew_loss"]]
        fleet.ew_accuracy = [float(v) for v in state["ew_accuracy"]]
        return fleet
