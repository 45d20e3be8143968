"""What the trainer trains: one model, or one per key (``--keyed``), behind one interface.

The trainer decodes, checks and sequences messages the same way for both; it
asks its models to ``place`` the checked messages (which model each row goes
to) and to ``learn`` them; a model that a batch leaves diverged (a weight
non-finite; a race: its leader's, see ``Race.diverged``) is restored, and the
rows it undid are reported, for the trainer to retrain message by message.
Publishing and the model-specific control ops differ, and live here too.

Both watch each classifier's prequential errors for concept drift
(``streammlp.drift``, a Page-Hinkley test per model) and publish a ``drift``
event for each drift detected, named by the model's version at the row where
it was detected. A race watches itself (``Race(drift=...)``): its drifts, and
the members it re-seeded on each, come with its figures.
"""

from __future__ import annotations

import copy
import time

import numpy as np

from streammlp import protocol
from streammlp.drift import DriftDetector, Drifts
from streammlp.fleet import Fleet, RaceFleet
from streammlp.network import MLP, InputError, Prequential, classify
from streammlp.race import RECENT_DRIFTS, Race  # as many latest drifts as a race keeps

# Models whose weights and figures are published per second at most (a tick sends its share):
# each costs two messages and ~30 us, so publishing stays a few % of the service's time
# however many models change.
PUBLISH_MODELS_PER_S = 1000
MODELS_PAGE = 100  # models a `models` request lists by default ...
MAX_MODELS_PAGE = 1000  # ... and at most
CLEAN = np.iinfo(np.int64).max  # a model not changed since its last publish
SORTS = ("model", "samples", "accuracy", "ew_accuracy", "ew_loss")  # `models` sort keys


class _Drift:
    """Drift detection over the models' prequential errors, and its events.

    Networks are watched here, a test per model; a race (one, or one per key)
    watches itself, and its results carry its drifts and its reaction.
    Regression models (identity outputs) have no error stream of 0s and 1s and
    are not watched.
    """

    def __init__(self, model, send, seen, keyed: bool, saved: dict | None = None) -> None:
        self.send, self.keyed = send, keyed
        self.detector = None
        self.drifts = 0  # detected since the service started
        self.recent: list[int] = []  # versions of the latest drifts (one model's)
        if saved:
            self.recent = list(saved["recent"])
        if model.output == "identity" or isinstance(model, Race):
            return
        # Resumed, the test goes on from the checkpoint's statistics, as if never stopped.
        self.detector = (DriftDetector.from_state(saved["detector"]) if saved
                         else DriftDetector(models=0))
        self.detector.grow(len(seen), np.asarray(seen)[len(self.detector.state):])
        DriftDetector().update([0], [0])  # compiled now, not on the first sample

    def observe(self, result: Prequential, slots: np.ndarray | None, keys: list[str] | None,
                undone: np.ndarray | None) -> None:
        """An event per drift of a learned batch: the race's, or those of the rows kept run
        through the detector."""
        if self.detector is not None and result.n:
            if slots is not None:
                if undone is not None:
                    slots = slots[~undone]
                self.detector.grow(len(keys))
            drifts: Drifts = self.detector.update(result.predicted, result.actual, slots)
        else:
            drifts = getattr(result, "drifts", None)  # a race's (None: not watched)
            if drifts is None or not len(drifts):
                return
        for j, (slot, version) in enumerate(zip(drifts.slots.tolist(), drifts.seen.tolist())):
            extra = {} if keys is None else {"model": keys[slot]}
            if drifts.reseeded and drifts.reseeded[j]:  # the race's reaction
                extra["reseeded"] = list(drifts.reseeded[j])
            self.send(protocol.EVENTS, protocol.event_body(
                "drift", version=version, detector="page_hinkley", **extra))
            self.drifts += 1
            self.recent = (self.recent + [version])[-RECENT_DRIFTS:]

    def state(self) -> dict:
        """What a checkpoint keeps (a race keeps its detector itself)."""
        saved = {"recent": list(self.recent)}
        if self.detector is not None:
            saved["detector"] = self.detector.state_dict()
        return saved

    def figures(self) -> dict:
        """What the ``metrics`` message says of drift: how many since the service started, and
        (one model) the versions of the latest; a keyed service's models are in the events."""
        return ({"drifts": self.drifts} if self.keyed else
                {"drifts": self.drifts, "drift_versions": list(self.recent)})


class OneModel:
    """The service's single network (or race): every message trains it. ``send(topic, body)``
    publishes."""

    keyed = False

    def __init__(self, net: MLP | Race, send, drift: dict | None = None) -> None:
        self.net, self.send = net, send
        self.drift = _Drift(net, send, [net.samples], keyed=False, saved=drift)

    @property
    def model(self) -> MLP | Race:
        """What checks the messages (and is checkpointed)."""
        return self.net

    @property
    def version(self) -> int:
        return self.net.samples

    def place(self, keys: list[str | None] | protocol.KeySpans, rows: np.ndarray
              ) -> tuple[None, dict[int, InputError]]:
        """Every message goes to the one model; one that names a model (``keys[j]``) is refused."""
        return None, {j: InputError("bad_model", f"this service trains one model; the message "
                                    f"names model {key!r} (start the service with --keyed, "
                                    "or drop 'model')")
                      for j, key in enumerate(keys) if key is not None}

    def learn(self, X: np.ndarray, Y: np.ndarray, slots: None
              ) -> tuple[Prequential | None, np.ndarray | None]:
        """The figures of the rows kept, and which rows were undone (None: none). A batch
        that leaves the model diverged (a race: its leader) is undone whole."""
        mark = self.net.mark()
        result = self.net.learn_checked(X, Y)
        if not self.net.diverged():
            self.drift.observe(result, None, None, None)
            return result, None
        self.net.rewind(mark)
        return None, np.ones(len(X), dtype=bool)

    def warm_up(self) -> None:
        """Run the kernels once, on a copy."""
        twin = copy.deepcopy(self.net)
        X = np.zeros((1, twin.n_inputs))
        twin.learn(X, np.zeros((1, twin.n_outputs)))
        twin.predict(X)

    def publish(self, changed: bool) -> None:
        """Publish the weights if they ``changed`` since the last publish."""
        if changed:
            self.send(protocol.WEIGHTS, protocol.weights_body(self.net, self.version))

    def answer(self, op: str, body: dict) -> dict:
        """The reply fields of a model op: ``snapshot`` or ``predict``."""
        if body.get("model") is not None:
            raise ValueError("this service trains one model (it was not started with --keyed); "
                             "drop 'model'")
        if op == "snapshot":
            return protocol.weights_body(self.net, self.version)
        if op == "predict":
            return _prediction(self.net.predict, self.net, body, self.version)
        raise ValueError("'models' lists the models of a keyed service (streammlp serve "
                         "--keyed); this one trains one model")

    def state(self) -> dict:
        return self.net.state()

    def totals(self) -> tuple[int, float, int]:
        """Samples, summed loss and correct rows over everything learned."""
        return self.net.samples, self.net.loss_total, self.net.correct_total


class ManyModels:
    """A model per key, created from a template on the key's first message (a fleet).

    ``send(topic, body)`` publishes: a new model's weights go out at once, with
    version 0; afterwards only models that learned since their last publish are
    published, the longest waiting first, at most ``PUBLISH_MODELS_PER_S`` a
    second (each tick sends its share).
    """

    keyed = True

    def __init__(self, fleet: Fleet | RaceFleet, send, drift: dict | None = None) -> None:
        self.fleet, self.send = fleet, send
        self.samples = fleet.totals()[0]
        # Per slot, the learn call that first changed it since its last publish (CLEAN: none).
        self.changed_at = np.full(0, CLEAN, dtype=np.int64)
        self._calls = 0
        self._published_at = time.monotonic()
        self.drift = _Drift(fleet.template, send, fleet.column("samples").astype(np.int64),
                            keyed=True, saved=drift)

    @property
    def model(self) -> Fleet | RaceFleet:
        return self.fleet

    @property
    def version(self) -> int:
        return self.samples

    def place(self, keys: list[str | None] | protocol.KeySpans, rows: np.ndarray
              ) -> tuple[np.ndarray, dict[int, InputError]]:
        """The slot of every row of messages of ``keys`` and ``rows`` (models created as
        needed), and the messages refused: a new key when the fleet is full."""
        if isinstance(keys, protocol.KeySpans):  # a drain's: found from its bytes
            slots = self.fleet.find(keys)
        else:
            slots = np.array([self.fleet.slots.get(key, -1) for key in keys], dtype=np.int64)
        refused = {}
        for j in np.flatnonzero(slots < 0).tolist():  # a new key, or None
            key = protocol.DEFAULT_MODEL if keys[j] is None else keys[j]
            slot = self.fleet.slots.get(key)  # created for an earlier message of this drain?
            if slot is None:
                try:
                    slot = self.fleet.slot(key)
                except InputError as e:
                    refused[j] = e
                    continue
                self._publish(slot)  # version 0: before any step
            slots[j] = slot
        if refused:
            rows, slots = np.delete(rows, list(refused)), np.delete(slots, list(refused))
        return np.repeat(slots, rows), refused

    def learn(self, X: np.ndarray, Y: np.ndarray, slots: np.ndarray
              ) -> tuple[Prequential, np.ndarray | None]:
        """The figures of the rows kept, and which rows were undone (None: none): each
        model that the batch leaves diverged is restored (``FleetResult``)."""
        result = self.fleet.learn_checked(X, Y, slots)
        self.samples += result.n
        self.drift.observe(result, slots, self.fleet.keys, result.undone)
        if len(self.changed_at) < len(self.fleet.keys):  # room for the new models
            grown = np.full(2 * len(self.fleet.keys), CLEAN, dtype=np.int64)
            grown[:len(self.changed_at)] = self.changed_at
            self.changed_at = grown
        self.changed_at[slots] = np.minimum(self.changed_at[slots], self._calls)
        self._calls += 1
        return result, result.undone

    def warm_up(self) -> None:
        """Run the kernels once, on an empty fleet of the same template (not a copy of
        this one, which may hold 100,000 models), and a drain's keys' decoding and lookup."""
        fleet = self.fleet
        twin = (Fleet(fleet.template) if isinstance(fleet, Fleet) else RaceFleet(fleet.make_race))
        X, Y = np.zeros((1, twin.n_inputs)), np.zeros((1, twin.n_outputs))
        twin.learn(["warm-up"], X, Y)
        twin.predict(0, X)
        frames = [protocol.encode_samples(X, Y, model=key) for key in ("warm-up", "up")]
        run = protocol.FrameTemplate(frames[0]).decode(b"".join(frames), list(map(len, frames)))
        twin.find(run.model)

    def publish(self, changed: bool) -> None:
        """Publish this tick's share of the models that learned (``changed`` is per model here)."""
        now = time.monotonic()
        share = max(1, int(PUBLISH_MODELS_PER_S * (now - self._published_at)))
        self._published_at = now
        waiting = np.flatnonzero(self.changed_at != CLEAN)
        if len(waiting) > share:  # the longest waiting (partitioned: sorting 10,000 took 0.7 ms)
            waiting = waiting[np.argpartition(self.changed_at[waiting], share - 1)[:share]]
        self.changed_at[waiting] = CLEAN
        for slot in waiting.tolist():
            self._publish(slot)

    def _publish(self, slot: int) -> None:
        key, figures = self.fleet.keys[slot], self.fleet.figures(slot)
        weights = protocol.weights_body(self.fleet.view(slot), figures["version"])
        self.send(protocol.model_topic(key, protocol.WEIGHTS), {**weights, "model": key})
        self.send(protocol.model_topic(key, protocol.METRICS),
                  protocol.model_metrics_body(figures, self.fleet.window))

    def answer(self, op: str, body: dict) -> dict:
        """The reply fields of a model op: ``snapshot``, ``predict``, ``stats`` of one
        model, or ``models``."""
        if op == "models":
            return self._list(body)
        slot = self._slot(body.get("model"), op)
        figures = self.fleet.figures(slot)
        if op == "snapshot":
            return {**protocol.weights_body(self.fleet.view(slot), figures["version"]),
                    "model": figures["model"]}
        if op == "predict":
            return {**_prediction(lambda X: self.fleet.predict(slot, X), self.fleet, body,
                                  figures["version"]), "model": figures["model"]}
        return protocol.model_metrics_body(figures, self.fleet.window)  # stats, ping of one model

    def _slot(self, key, op: str) -> int:
        if key is None:
            raise ValueError(f"this service is keyed: {op} needs 'model' (the op 'models' "
                             "lists them)")
        slot = self.fleet.slots.get(key)
        if slot is None:
            raise ValueError(f"no model {key!r}; it is created by its first message (the op "
                             "'models' lists those there are)")
        return slot

    def _list(self, body: dict) -> dict:
        """A page of models: ``offset``, ``limit``, ``sort`` (a field of ``SORTS``, ``-`` first
        for descending) and ``match`` (a substring of the key)."""
        offset, limit = body.get("offset", 0), body.get("limit", MODELS_PAGE)
        sort, match = body.get("sort", "model"), body.get("match")
        if type(offset) is not int or offset < 0:
            raise ValueError(f"offset {offset!r}: expected a whole number >= 0")
        if type(limit) is not int or not 0 < limit <= MAX_MODELS_PAGE:
            raise ValueError(f"limit {limit!r}: expected 1 to {MAX_MODELS_PAGE}")
        if sort not in SORTS and not (isinstance(sort, str) and sort[1:] in SORTS and sort[0] == "-"):
            raise ValueError(f"sort {sort!r}: expected one of {', '.join(SORTS)}, '-' first for "
                             "descending")
        if match is not None and type(match) is not str:
            raise ValueError(f"match {match!r}: expected a string")
        keys = self.fleet.keys
        slots = np.array([s for s, k in enumerate(keys) if match in k] if match else
                         range(len(keys)), dtype=np.int64)
        field, descending = sort.lstrip("-"), sort.startswith("-")
        if field == "model":
            order = sorted(slots.tolist(), key=keys.__getitem__, reverse=descending)
        else:
            values = self.fleet.column(field)[slots]
            values = np.where(np.isnan(values), -np.inf, values)  # no figures yet: lowest
            order = slots[np.argsort(-values if descending else values, kind="stable")].tolist()
        page = order[offset:offset + limit]
        return {"models": [self.fleet.figures(int(s)) for s in page], "total": len(order),
                "offset": offset}

    def state(self) -> dict:
        return self.fleet.state()

    def totals(self) -> tuple[int, float, int]:
        return self.fleet.totals()


def _prediction(predict, model, body: dict, version: int) -> dict:
    if "x" not in body:
        raise ValueError("predict needs 'x': a list of rows or a binary array")
    outputs = predict(model.check_inputs(protocol.decode_array("x", body["x"])))
    return {"outputs": protocol.encode_array(outputs), "classes": classify(outputs).tolist(),
            "version": version}
