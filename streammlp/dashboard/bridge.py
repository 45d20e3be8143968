"""The dashboard's link to a running service: a subscriber thread feeding boards, control requests.

One thread owns the subscriber sockets (ZeroMQ sockets are not thread-safe):
it takes ``weights``, ``metrics`` and ``events`` into the service's board and,
for a keyed service, ``model/<KEY>/...`` into one board per model that some
page is looking at. When nothing arrives for ``heartbeat`` seconds (the
service sends ``metrics`` even when idle) the status says the service is gone;
ZeroMQ reconnects by itself, and when the service is back after a restart (a
new ``run``, or fewer samples), the subscriber is made afresh so that weights'
versions are tracked from the new run's snapshot.

Control requests (a model's snapshot, the ``models`` list) are made by the
caller's thread, each on a ``Control`` of its own.
"""

from __future__ import annotations

import queue
import threading
import time

import zmq

from .. import protocol
from ..client import Control, ServiceError, Subscriber
from .board import Board, json_number

HEARTBEAT_TIMEOUT = 3.0  # seconds without a message before the service counts as gone
POLL_MS = 200  # how often the subscriber thread looks up from its sockets
RETRY_S = 1.0  # pause between attempts to reach a service that is gone
PING_TIMEOUT = 0.5  # seconds the control endpoint has to answer before the service counts as gone
MAX_WATCHED = 16  # models of a keyed service watched at once (a board and a subscription each)
# The model picker's orders, as the `models` op sorts ("-" first: descending).
ORDERS = {"active": "-samples", "worst": "ew_accuracy", "best": "-ew_accuracy"}
MAX_LIST = 100  # models per page of the picker


class Bridge:
    """Subscribes to a service at ``publish`` (and asks ``control``) for the dashboard.

    ``status`` says whether the service is ``connecting``, ``live`` or
    ``gone``; ``service`` is its board; ``watch(key)`` gives a model's board.
    """

    def __init__(self, publish: str, control: str | None = None,
                 curve: tuple[str, str] | None = None,
                 heartbeat: float = HEARTBEAT_TIMEOUT) -> None:
        self.publish, self.control, self.curve, self.heartbeat = publish, control, curve, heartbeat
        self.service = Board()
        self.keyed = False  # the service's metrics count "models"
        self._boards: dict[str, Board] = {}
        self._watchers: dict[str, int] = {}
        self._lock = threading.Lock()
        self._subscriptions: queue.SimpleQueue = queue.SimpleQueue()  # (+1 | -1, key)
        self._context = zmq.Context()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dashboard-subscriber", daemon=True)
        self._set_status("connecting", f"waiting for {publish}")

    def __repr__(self) -> str:
        return f"Bridge({self.publish!r}, {self.control!r}, status={self.status['state']!r})"

    def start(self) -> "Bridge":
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=HEARTBEAT_TIMEOUT + 10)
        self._context.term()

    # -- models of a keyed service ------------------------------------------------------------------

    def watch(self, key: str) -> Board:
        """The board of model ``key``, subscribed to until as many ``unwatch`` calls."""
        protocol.check_key(key)
        with self._lock:
            if key not in self._boards:
                if len(self._boards) >= MAX_WATCHED:
                    raise ValueError(f"{MAX_WATCHED} models are on show already; close a page first")
                self._boards[key] = Board(key)
                self._subscriptions.put((1, key))
            self._watchers[key] = self._watchers.get(key, 0) + 1
            return self._boards[key]

    def unwatch(self, key: str) -> None:
        with self._lock:
            self._watchers[key] -= 1
            if not self._watchers[key]:
                del self._watchers[key], self._boards[key]
                self._subscriptions.put((-1, key))

    def prime(self, key: str) -> None:
        """Fill a new model board from the control endpoint (an idle model publishes nothing)."""
        board = self._boards.get(key)
        if board is None or self.control is None:
            return
        with Control(self.control, context=self._context, curve=self.curve, retries=1) as control:
            snapshot, stats = control.snapshot(key), control.stats(key)
        board.weights(snapshot.version, snapshot.weights, snapshot.member,
                      getattr(snapshot, "run", None))
        if board.samples < 0:  # nothing published yet: an older figure would look like a restart
            board.metrics(stats)

    def models(self, order: str = "active", search: str = "", offset: int = 0,
               limit: int = 20) -> dict:
        """A page of the keyed service's models in ``order`` (see ``ORDERS``), only those whose
        key contains ``search`` if given: ``{"models": [figures...], "total", "offset"}``."""
        if order not in ORDERS:
            raise ValueError(f"order {order!r} is not one of {', '.join(ORDERS)}")
        if not 1 <= limit <= MAX_LIST:
            raise ValueError(f"limit {limit} is not in 1..{MAX_LIST}; page with offset")
        if self.control is None:
            raise ValueError("no control endpoint: start the dashboard with --control ENDPOINT")
        with Control(self.control, context=self._context, curve=self.curve, retries=1) as control:
            page = control.models(offset, limit, ORDERS[order], search or None)
        return {**page, "models": [{k: json_number(v) if isinstance(v, float) else v
                                    for k, v in m.items()} for m in page["models"]]}

    # -- the subscriber thread ----------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                service, models = self._subscribe()
            except TimeoutError:  # the control endpoint did not answer: the service is not there
                self._gone(f"no answer from {self.control}")
                self._stop.wait(RETRY_S)
                continue
            try:
                self._pump(service, models)
            finally:
                service.close(linger=0)
                models.close(linger=0)

    def _subscribe(self) -> tuple[Subscriber, Subscriber]:
        """The service's subscriber (with a late-join snapshot) and one for watched models."""
        topics = ("weights", "metrics", "events")
        if self.control is not None:  # a short ping first: a gone service costs one, not 3 x 2 s
            with Control(self.control, timeout=PING_TIMEOUT, retries=1, context=self._context,
                         curve=self.curve) as control:
                control.ping()
        try:
            service = Subscriber(self.publish, self.control, topics, context=self._context,
                                 curve=self.curve)
        except ServiceError:  # a keyed service has no weights of its own to snapshot
            service = Subscriber(self.publish, None, topics, context=self._context, curve=self.curve)
        # Subscribed to nothing yet: each model on show is added below, by its prefix.
        models = Subscriber(self.publish, None, ("weights",), models=(), context=self._context,
                            curve=self.curve)
        with self._lock:  # the models on show now, and no queued change that would repeat one
            while not self._subscriptions.empty():
                self._subscriptions.get_nowait()
            for key in self._boards:
                models.socket.setsockopt(zmq.SUBSCRIBE, _prefix(key))
        return service, models

    def _pump(self, service: Subscriber, models: Subscriber) -> None:
        """Take messages until stopped, or until the service restarted (then subscribe afresh)."""
        poller = zmq.Poller()
        poller.register(service.socket, zmq.POLLIN)
        poller.register(models.socket, zmq.POLLIN)
        heard = time.monotonic()
        while not self._stop.is_set():
            self._resubscribe(models)
            ready = dict(poller.poll(POLL_MS))
            if not ready:
                if time.monotonic() - heard > self.heartbeat and self.status["state"] != "gone":
                    self._gone(f"no message from {self.publish} for {self.heartbeat:g} s")
                continue
            heard = time.monotonic()
            if self.status["state"] != "live":
                self._set_status("live", f"receiving from {self.publish}")
            for sub in (service, models):
                while sub.socket in ready and sub.socket.poll(0, zmq.POLLIN):
                    try:
                        topic, message = sub.recv(timeout=0)
                    except TimeoutError:  # only stale weights were queued
                        break
                    if self._take(topic, message):
                        return

    def _take(self, topic: str, message) -> bool:
        """Put one message on its board; True when it shows the service restarted. A keyed
        service's models' messages come as ``weights`` and ``metrics`` too, naming the model."""
        if topic == "weights":
            board = self._boards.get(message.model) if message.model else self.service
            if board is not None:
                board.weights(message.version, message.weights, message.member,
                              getattr(message, "run", None))
        elif topic == "metrics":
            if message.get("model") is None:  # the service's own, or a keyed service's totals
                self.keyed = "models" in message
                return self.service.metrics(message)
            board = self._boards.get(message["model"])
            if board is not None:
                board.metrics(message)
        elif topic == "events":  # a model's drift on its board; rejections on the service's too
            key = message.get("model")
            if key is None or message.get("kind") != "drift":
                self.service.event(message)
            if key in self._boards:
                self._boards[key].event(message)
        return False

    def _resubscribe(self, models: Subscriber) -> None:
        """Apply the watch/unwatch calls made since the last look, in this thread."""
        while True:
            try:
                change, key = self._subscriptions.get_nowait()
            except queue.Empty:
                return
            models.socket.setsockopt(zmq.SUBSCRIBE if change > 0 else zmq.UNSUBSCRIBE, _prefix(key))

    def _gone(self, detail: str) -> None:
        self._set_status("gone", detail)

    def _set_status(self, state: str, detail: str) -> None:
        self.status = {"state": state, "since": time.time(), "detail": detail}


def _prefix(key: str) -> bytes:
    """The topic prefix of one model's messages (the slash keeps ``a`` from matching ``ab``)."""
    return protocol.model_topic(key, b"")
