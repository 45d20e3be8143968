"""Clients of the trainer service: feed it samples, ask it questions, watch it learn.

Examples
--------
A producer, a subscriber and a control client of a service on the default endpoints::

    with Producer("tcp://127.0.0.1:5555") as producer:
        producer.send(X, y)
    with Subscriber("tcp://127.0.0.1:5556", "tcp://127.0.0.1:5557") as sub:
        for topic, message in sub:            # weights first (the late-join snapshot)
            ...
    with Control("tcp://127.0.0.1:5557") as control:
        control.predict(X)
"""

from __future__ import annotations

import contextlib
import time
from typing import Iterator, Sequence

import numpy as np
import zmq
from zmq.utils.monitor import recv_monitor_message

from . import protocol, security

REQUEST_TIMEOUT = 2.0  # seconds a control request waits for its reply
REQUEST_RETRIES = 3  # tries before a control request gives up
DELIVERY_TIMEOUT_MS = 30_000  # how long closing a Producer waits for its messages to go out
ALL_MODELS = "*"  # Subscriber(models=ALL_MODELS): every model of a keyed service
CONNECT_TIMEOUT = 10.0  # seconds Producer.wait_connected waits for the service's handshake
TOPICS = ("weights", "metrics", "events")  # what the service publishes

# The socket monitor events that say whether the service took this client's handshake.
_HANDSHAKE_EVENTS = (zmq.EVENT_CONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED
                     | zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                     | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
_WRONG_KIND = ("is it the service's endpoint for this kind of client (Producer: ingest, "
               "ReliableProducer: acked, Subscriber: publish, Control: control)?")


class ServiceError(RuntimeError):
    """The service answered ``{"ok": false, "error": ...}``."""


class _Client:
    """What the clients share: one socket, one context, optional CurveZMQ keys.

    ``curve`` is ``(client_secret_file, server_public_file)`` for a service
    started with ``--curve-secret`` (see ``streammlp.security``). A socket
    monitor follows the handshakes, so that a client can tell "nobody answers"
    from "the service refused my key" (``refused``).
    """

    def __init__(self, context: zmq.Context | None, curve: tuple[str, str] | None = None) -> None:
        self.context = context or zmq.Context.instance()
        self.curve = curve
        self.socket: zmq.Socket | None = None
        self._monitor: zmq.Socket | None = None
        self.connected = False  # a handshake with the service succeeded (with CURVE: keys accepted)
        self.refused: str | None = None  # why the latest handshake failed, if it did
        self._reached = False  # something listens at the endpoint (TCP connected)

    def _connect(self, kind: int, endpoint: str) -> zmq.Socket:
        sock = self.context.socket(kind)
        if self.curve:
            security.secure_client(sock, *self.curve)
        self._monitor = sock.get_monitor_socket(_HANDSHAKE_EVENTS)  # before connect: miss nothing
        sock.connect(endpoint)
        return sock

    def _handshakes(self, wait: float = 0.0) -> None:
        """Take the monitor's news (waiting up to ``wait`` seconds for some): ``connected``, ``refused``."""
        if self._monitor is None:
            return
        while self._monitor.poll(int(wait * 1000), zmq.POLLIN):
            event = recv_monitor_message(self._monitor)
            wait = 0.0
            kind, value = event["event"], event["value"]
            if kind == zmq.EVENT_CONNECTED:
                self._reached = True
            elif kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.connected, self.refused = True, None
            elif kind == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                self.refused = (f"the service refused this client's key (ZAP status {value}); "
                                "is its public key in the service's --allow-keys directory?")
            elif kind == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
                self.refused = ("the handshake failed: the service speaks another security "
                                "mechanism (CURVE on one side only?)"
                                if value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH else
                                f"the handshake failed (ZMTP protocol error {value:#x})")
            else:
                self.refused = ("the handshake failed: the service could not read it (is "
                                "--curve-server-key the service's public key?)" if self.curve
                                else "the handshake failed: does the service need CURVE keys "
                                f"(curve=...)? Else, {_WRONG_KIND}")

    def _silence(self) -> str:
        """Why nothing answered, as far as the monitor knows."""
        self._handshakes()
        if self.refused:
            return self.refused
        if self._reached and not self.connected:
            return f"something listens there but never completed a handshake: {_WRONG_KIND}"
        return "is the service running?"

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self, linger: int = 1000) -> None:
        if self.socket is not None:
            if self._monitor is not None:
                self.socket.disable_monitor()
                self._monitor.close(linger=0)
                self._monitor = None
            self.socket.close(linger=linger)
            self.socket = None


class Producer(_Client):
    """Sends samples to the service's ingest endpoint (PUSH).

    ``send`` blocks while the service's queue is full (back-pressure), so
    nothing sent is dropped; ``timeout`` (seconds) bounds that wait. A batch
    larger than one frame may hold is sent as several messages, in order.
    ``close`` (or leaving the ``with`` block) waits until what was sent is
    delivered, up to ``DELIVERY_TIMEOUT_MS``: a process may exit right after it.

    ZeroMQ connects in the background, so ``send`` returns before anyone has
    received anything. ``wait_connected`` checks that the service is there
    and took this producer's keys; ``close`` raises ``ConnectionError`` if
    messages were sent and no service ever took them. Delivered is not
    trained: the service may still refuse a message (see its ``events``).
    """

    def __init__(self, endpoint: str = protocol.INGEST_ENDPOINT, binary: bool = True,
                 producer: str | None = None, timeout: float | None = None,
                 context: zmq.Context | None = None, curve: tuple[str, str] | None = None,
                 model: str | None = None) -> None:
        # A context of its own, so that close() can wait for delivery by ending it: a socket's
        # linger is only honoured while its context is terminated, not at a bare process exit.
        super().__init__(context or zmq.Context(), curve)
        self._own_context = context is None
        self.endpoint, self.binary, self.producer, self.timeout = endpoint, binary, producer, timeout
        self.model = None if model is None else protocol.check_key(model)
        self.seq = 0
        self.sent = 0  # messages handed to the socket
        self.socket = self._connect(zmq.PUSH, endpoint)
        if timeout is not None:
            self.socket.setsockopt(zmq.SNDTIMEO, int(timeout * 1000))

    def send(self, X, y, model: str | None = None) -> None:
        """Send rows ``X`` with targets ``y`` (trained in order, one step each): one message, or
        several in order when the batch is over ``protocol.MAX_ROWS`` rows or
        ``protocol.MAX_MESSAGE_BYTES``; for ``model`` (default: the producer's) on a keyed
        service. ``ConnectionError`` if the service refused this
        producer's handshake, ``TimeoutError`` if a send blocked for ``timeout`` seconds."""
        self._handshakes()
        if self.refused and not self.connected:
            raise ConnectionError(f"{self.endpoint}: {self.refused}")
        for frame in protocol.encode_batch(X, y, producer=self.producer,
                                           seq=self.seq + 1 if self.producer else None,
                                           binary=self.binary, model=model or self.model):
            try:
                self.socket.send(frame)
            except zmq.Again:
                raise TimeoutError(f"sending to {self.endpoint} blocked for {self.timeout} s: the "
                                   "service's queue is full, or no service is there "
                                   f"({'connected' if self.connected else self._silence()})") from None
            self.seq += 1
            self.sent += 1

    def wait_connected(self, timeout: float = CONNECT_TIMEOUT) -> None:
        """Return once the service has taken this producer's handshake (with CURVE: its keys);
        ``ConnectionError`` if it refused them, ``TimeoutError`` if nobody answers in time."""
        deadline = time.monotonic() + timeout
        self._handshakes()
        while not self.connected:
            if self.refused:
                raise ConnectionError(f"{self.endpoint}: {self.refused}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no service answered at {self.endpoint} within {timeout} s; "
                                   f"{self._silence()}")
            self._handshakes(min(left, 0.1))


    def close(self, linger: int = DELIVERY_TIMEOUT_MS) -> None:
        """Close once every queued message is delivered, waiting at most ``linger`` ms.

        ``ConnectionError`` if messages were sent and no service took this
        producer's handshake within ``linger`` (they are dropped: nobody has
        them), ``TimeoutError`` if some were still queued when ``linger`` ran
        out. ``linger=0`` drops whatever is queued, without an error.
        """
        if self.socket is None:
            return
        undelivered = None
        if linger and self.sent and not self.connected:
            try:
                self.wait_connected(linger / 1000)
            except (ConnectionError, TimeoutError) as e:
                undelivered = ConnectionError(f"{self.sent} message(s) sent to {self.endpoint} were "
                                              f"not delivered: {e}")
                linger = 0  # nobody will take them
        started = time.monotonic()
        super().close(linger)
        if self._own_context and not self.context.closed:
            self.context.term()  # returns once the queue is empty, or after linger
        if undelivered:
            raise undelivered
        if linger and self.sent and time.monotonic() - started >= linger / 1000:
            raise TimeoutError(f"messages to {self.endpoint} were still queued after {linger} ms "
                               "and were dropped; is the service keeping up?")

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.close()
        else:  # deliver what was sent, but do not hide the error in flight behind another
            with contextlib.suppress(ConnectionError, TimeoutError):
                self.close()


class ReliableProducer(_Client):
    """Sends samples to the acknowledged ingest (DEALER), keeping each until it is durable.

    Every message carries this producer's name and the next ``seq``. The
    service trains each ``seq`` once, in order, and acknowledges it once a
    checkpoint on disk includes it; only then is it forgotten here. Messages
    not acknowledged within ``resend_after`` seconds are sent again (the service
    ignores what it already has), and so are all after a gap it reports.

    At most ``window`` messages wait for acknowledgement: ``send`` then waits
    for the service, ``TimeoutError`` after ``timeout`` seconds without
    progress. After a ``TimeoutError`` nothing is lost: the messages stay
    pending, for ``flush`` or ``connect`` to another endpoint.

    A name is one stream: a new ``ReliableProducer`` with a name the service
    knows continues after that name's last ``seq`` (it asks on connect).
    """

    def __init__(self, endpoint: str, producer: str, window: int = 1000, resend_after: float = 1.0,
                 timeout: float = 30.0, context: zmq.Context | None = None,
                 curve: tuple[str, str] | None = None, model: str | None = None) -> None:
        super().__init__(context, curve)
        self.producer, self.window = producer, window
        self.model = None if model is None else protocol.check_key(model)
        self.resend_after, self.timeout = resend_after, timeout
        self.seq = None  # last seq used; known once the service has answered the hello
        self.pending: dict[int, bytes] = {}  # seq -> frame, oldest first
        self.rejected: list[dict] = []  # the service's answers for messages it refused
        self._heard_at = time.monotonic()  # the service's latest answer
        self._resent = (0, 0.0)  # (first seq, when) of the latest resend
        self.connect(endpoint)

    def connect(self, endpoint: str) -> None:
        """(Re)connect, e.g. to a restarted service; waits for its hello, then resends what is pending."""
        self.close(linger=0)
        self._resent = (0, 0.0)
        self.socket = self._connect(zmq.DEALER, endpoint)
        self.endpoint = endpoint
        self.socket.send(protocol.pack({"v": protocol.VERSION, "producer": self.producer,
                                        "hello": True}))
        self._wait(lambda: self.seq is not None, f"no answer from {endpoint}")

    def send(self, X, y, model: str | None = None) -> None:
        """Send rows ``X`` with targets ``y`` as one message (several, in order, over
        ``protocol.MAX_ROWS`` rows or ``protocol.MAX_MESSAGE_BYTES``), for ``model``
        (default: the producer's) on a keyed service; kept until durable."""
        for frame in protocol.encode_batch(X, y, producer=self.producer, seq=self.seq + 1,
                                           model=model or self.model):
            self._wait(lambda: len(self.pending) < self.window,
                       f"{len(self.pending)} messages unacknowledged by {self.endpoint}")
            self.seq += 1
            self.pending[self.seq] = frame
            self._send(frame)
            self._pump(0)

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every message sent is durable (or refused, see ``rejected``);
        ``TimeoutError`` otherwise."""
        self._wait(lambda: not self.pending, f"{len(self.pending)} messages unacknowledged by "
                   f"{self.endpoint}", timeout)

    def __exit__(self, *exc) -> None:
        """Leaving the block waits until what was sent is durable (``TimeoutError`` if it does
        not become so): closing forgets the pending messages. With an error in flight, the
        block is left at once."""
        try:
            if exc[0] is None:
                self.flush()
        finally:
            self.close()

    def _wait(self, done, what: str, timeout: float | None = None) -> None:
        """Pump answers until ``done()``; ``TimeoutError`` after ``timeout`` s of silence."""
        timeout = self.timeout if timeout is None else timeout
        started = time.monotonic()
        while not done():
            if time.monotonic() - max(started, self._heard_at) > timeout:
                raise TimeoutError(f"{what} for {timeout} s; {self._silence()} "
                                   "Nothing is lost: the messages stay pending")
            self._pump(min(self.resend_after, 0.1))

    def _pump(self, wait: float) -> None:
        """Handle the service's answers for up to ``wait`` seconds; resend what is overdue."""
        if self.socket.poll(int(wait * 1000), zmq.POLLIN):
            while self.socket.poll(0, zmq.POLLIN):
                self._status(protocol.unpack(self.socket.recv()))
        quiet = time.monotonic() - max(self._heard_at, self._resent[1])
        if self.pending and quiet > self.resend_after:  # lost, or the service went away
            self._resend(min(self.pending))

    def _status(self, status: dict) -> None:
        self._heard_at = time.monotonic()
        durable, expected = status.get("durable", 0), status.get("next", 1)
        if self.seq is None:  # the hello's answer: continue this name's stream
            self.seq = max(expected - 1, max(self.pending, default=0))
        if "rejected" in status:
            self.rejected.append(status)
            self.pending.pop(status["rejected"], None)
        for seq in [seq for seq in self.pending if seq <= durable]:
            del self.pending[seq]
        # A gap, or a (re)connect: send again from where the service stands, once per
        # gap (every message in flight behind a gap reports the same one).
        first, at = self._resent
        if status.get("resend") and (expected != first or self._heard_at - at > self.resend_after):
            self._resend(expected)

    def _resend(self, first: int) -> None:
        self._resent = (first, time.monotonic())
        for seq, frame in self.pending.items():
            if seq >= first:
                self._send(frame)

    def _send(self, frame: bytes) -> None:
        try:
            self.socket.send(frame, zmq.NOBLOCK)
        except zmq.Again:  # not connected or queue full: it stays pending and is resent later
            pass


class Control(_Client):
    """Requests to the service's control endpoint, Lazy Pirate style: never hangs forever.

    Each request waits ``timeout`` seconds for its reply; without one, the
    socket is thrown away (linger 0) and the request sent again on a fresh one,
    up to ``retries`` times, then ``TimeoutError``.
    """

    def __init__(self, endpoint: str = protocol.CONTROL_ENDPOINT, timeout: float = REQUEST_TIMEOUT,
                 retries: int = REQUEST_RETRIES, context: zmq.Context | None = None,
                 curve: tuple[str, str] | None = None) -> None:
        super().__init__(context, curve)
        self.endpoint, self.timeout, self.retries = endpoint, timeout, retries

    def request(self, op: str, **fields) -> dict:
        """Send ``{"op": op, **fields}``; the reply's fields, or ``ServiceError``."""
        request = protocol.pack({"op": op, **fields})
        for _ in range(self.retries):
            if self.socket is None:
                self.socket = self._connect(zmq.REQ, self.endpoint)
            self.socket.send(request)
            if self.socket.poll(int(self.timeout * 1000), zmq.POLLIN):
                reply = protocol.unpack(self.socket.recv())
                if not reply.get("ok"):
                    raise ServiceError(reply.get("error", "the service gave no reason"))
                reply.pop("ok")
                return reply
            why = self._silence()
            self.close(linger=0)  # a REQ socket that lost its reply is stuck: start afresh
        raise TimeoutError(f"no reply from {self.endpoint} to {op!r} after {self.retries} tries "
                           f"of {self.timeout} s; {why}")

    # Every op below takes ``model``: on a keyed service, the model asked about (snapshot
    # and predict need one); without it, ping and stats give the totals over every model.

    def ping(self, model: str | None = None) -> int:
        """The service's version (samples trained), or one model's."""
        return self.request("ping", **_model(model))["version"]

    def snapshot(self, model: str | None = None) -> protocol.Weights:
        return protocol.decode_weights(self.request("snapshot", **_model(model)))

    def stats(self, model: str | None = None) -> dict:
        return self.request("stats", **_model(model))

    def predict(self, X, model: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Outputs ``(n, outputs)`` and classes ``(n,)`` of the current model; no training."""
        reply = self.request("predict", x=protocol.encode_array(np.asarray(X, dtype=np.float64)),
                             **_model(model))
        return protocol.decode_array("outputs", reply["outputs"]), np.array(reply["classes"])

    def models(self, offset: int = 0, limit: int = 100, sort: str = "model",
               match: str | None = None) -> dict:
        """A page of a keyed service's models: ``{"models": [figures...], "total", "offset"}``;
        ``sort`` by ``model``, ``samples``, ``accuracy``, ``ew_accuracy`` or ``ew_loss``
        (``-`` first for descending), ``match`` a substring of the keys."""
        return self.request("models", offset=offset, limit=limit, sort=sort,
                            **({} if match is None else {"match": match}))

    def save(self) -> str:
        """Checkpoint now; the path written."""
        return self.request("save")["path"]


def _model(model: str | None) -> dict:
    return {} if model is None else {"model": model}


class Subscriber(_Client):
    """Versioned weights and metrics from the service's publish endpoint (SUB).

    ``topics`` chooses what comes: ``recv`` returns ``("weights",
    protocol.Weights)``, ``("metrics", dict)`` or ``("events", dict)``; ask for
    ``topics=("weights",)`` to get weights only. With a control endpoint, a late
    joiner gets the current weights at once (the Clone pattern): it subscribes
    first, then asks for a snapshot, and drops published weights whose version
    is not newer than what it has. Versions count within one run of the
    service (``Weights.run``): weights from a new run (a fresh start, or a
    resume from an older checkpoint) are taken whatever their version.

    On a keyed service, ``models`` selects the models: one key, several, or
    ``ALL_MODELS``; their messages come as ``"weights"`` and ``"metrics"`` too,
    each naming its ``model``, and the service's totals as ``"metrics"``
    without one. A late joiner gets a snapshot of each model named (with
    ``ALL_MODELS``, each model's next publish; ``Control.models`` lists them).

    Examples
    --------
    >>> with Subscriber(service.publish, service.control, topics=("weights",)) as sub:  # doctest: +SKIP
    ...     for topic, weights in sub:
    ...         print(weights.version)
    """

    def __init__(self, publish: str = protocol.PUBLISH_ENDPOINT, control: str | None = None,
                 topics: tuple[str, ...] = TOPICS, timeout: float | None = None,
                 context: zmq.Context | None = None, curve: tuple[str, str] | None = None,
                 models: str | Sequence[str] | None = None) -> None:
        if isinstance(topics, str) or not topics or not set(topics) <= set(TOPICS):
            raise ValueError(f"topics={topics!r}; expected a tuple of some of {TOPICS}, "
                             "such as ('weights',)")
        super().__init__(context, curve)
        self.endpoint, self.timeout = publish, timeout
        self.version = -1  # newest weights version handed out (unkeyed)
        self.versions: dict[str, int] = {}  # ... of each model (keyed)
        self.run: str | None = None  # the service run those versions count in
        self.socket = self._connect(zmq.SUB, publish)
        keys = [models] if isinstance(models, str) and models != ALL_MODELS else models
        for topic in topics:
            if models is None or topic not in ("weights", "metrics"):
                self.socket.setsockopt(zmq.SUBSCRIBE, topic.encode())
            elif models == ALL_MODELS:
                self.socket.setsockopt(zmq.SUBSCRIBE, b"model/")
            else:
                for key in keys:
                    self.socket.setsockopt(zmq.SUBSCRIBE,
                                           protocol.model_topic(protocol.check_key(key), topic.encode()))
        if models is not None and "metrics" in topics:  # the totals, exactly: not model/...
            self.socket.setsockopt(zmq.SUBSCRIBE, protocol.METRICS)
        self._pending: list[tuple[str, object]] = []
        if control is not None and "weights" in topics and models != ALL_MODELS:
            with Control(control, context=self.context, curve=curve) as c:
                for key in keys or [None]:
                    try:
                        snapshot = c.snapshot(key)
                    except ServiceError:  # a model not created yet: its first publish will do
                        if key is None:
                            raise
                        continue
                    self._pending.append(("weights", snapshot))
                    self._newer(snapshot.model, snapshot.version, snapshot.run)

    def _newer(self, model: str | None, version: int, run: str | None) -> bool:
        """Whether ``version`` is newer than what was handed out of that model; then note it.
        A new run of the service starts every count afresh."""
        if run != self.run:
            self.run, self.version, self.versions = run, -1, {}
        last = self.version if model is None else self.versions.get(model, -1)
        if version <= last:
            return False
        if model is None:
            self.version = version
        else:
            self.versions[model] = version
        return True

    def recv(self, timeout: float | None = None) -> tuple[str, object]:
        """The next message; ``TimeoutError`` after ``timeout`` seconds (default: the constructor's)."""
        if self._pending:
            return self._pending.pop(0)
        timeout = self.timeout if timeout is None else timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = -1 if deadline is None else max(0, int((deadline - time.monotonic()) * 1000))
            if not self.socket.poll(wait, zmq.POLLIN):
                why = "connected, but nothing was published" if self.connected else self._silence()
                raise TimeoutError(f"no message from {self.endpoint} within {timeout} s; {why}")
            topic, body = self.socket.recv_multipart()
            message = protocol.unpack(body)
            kind = topic.rsplit(b"/", 1)[-1]  # model/KEY/weights -> weights
            if kind == protocol.WEIGHTS:
                if not self._newer(message.get("model"), message["version"], message.get("run")):
                    continue  # older than the snapshot or a duplicate: never go backwards
                return "weights", protocol.decode_weights(message)
            return kind.decode(), message

    def __iter__(self) -> Iterator[tuple[str, object]]:
        while True:
            yield self.recv()
