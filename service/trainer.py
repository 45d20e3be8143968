"""The trainer loop: samples in over ZeroMQ, one gradient step each, weights and metrics out.

A sample's path, start to end: ``samples`` socket (PULL) -> ``Trainer._drain_samples``
(decode and check every message, in arrival order; ``_train_alike`` does a
drain of frames alike but for their numbers in one step) -> ``MLP.learn`` (one
kernel call for all that arrived, one step per sample; keyed: ``ManyModels.place``
finds each message's model, then one ``Fleet`` call trains them all) -> ``StreamMetrics`` ->
``publisher`` (PUB: ``weights``, ``metrics``, ``events``). The ``control``
socket (ROUTER) answers ping, snapshot, stats, predict and save.

With a source (``service.sources``: a durable log such as a JetStream stream)
the log replaces the ``samples`` socket: ``Trainer._drain_source`` trains each
batch the source hands over the same way, and the checkpoint records the log
position applied, so a restart continues after it, exactly once.
"""

from __future__ import annotations

import functools
import logging
import math
import operator
import secrets
import time
from collections import Counter

import numpy as np
import zmq
from zmq.utils.monitor import recv_monitor_message

from streammlp import checkpoint, protocol, security
from streammlp.fleet import Fleet, RaceFleet
from streammlp.metrics import StreamMetrics
from streammlp.network import MLP, InputError
from streammlp.race import Race

from .config import TrainerConfig
from .ledger import Ledger
from .models import ManyModels, OneModel
from .prometheus import PrometheusExporter

log = logging.getLogger("streammlp.service")

POLL_MS = 100  # longest wait before the loop looks at timers and the stop flag
MAX_DRAIN = 512  # messages taken off the ingest queue before training them in one call
# ... or bytes (one message may be larger). Small drains are faster, not only bounded: their
# buffers are reused, where a 64 MB drain's were mapped afresh each time and copied at a tenth
# of the speed (page faults: 1.5 GB/s against 17 GB/s for 4 MB, measured here).
MAX_DRAIN_BYTES = 4 << 20
LINGER_MS = 1000  # how long a closing socket may still flush queued messages
INGEST_HWM = 1000  # queued ingest messages before producers' PUSH sockets block
SAVE_RETRY_S = 1.0  # after a failed checkpoint, the next try waits at least this long
# Handshakes a CURVE service refuses: an unknown key (ZAP), no CURVE, a wrong server key.
REFUSALS = {zmq.EVENT_HANDSHAKE_FAILED_AUTH: "with a key not allowed",
            zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "without CURVE",
            zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "unreadable (a wrong server key?)"}


class Trainer:
    """Owns the models, the metrics and the sockets; ``run()`` is the poll loop.

    ``model`` is a fresh or resumed network, race, or fleet (one model per key);
    ``rejected`` and ``producers`` are the rejection counts and acknowledged
    producers' sequence numbers of a resumed checkpoint; ``source`` a log to
    read instead of the ingest socket, ``position`` the last of its positions
    applied (the checkpoint's; None: where the source's options say); ``drift``
    the drift detector's state of the checkpoint.
    """

    def __init__(self, model: MLP | Race | Fleet | RaceFleet, config: TrainerConfig = TrainerConfig(),
                 rejected: dict | None = None, producers: dict | None = None,
                 source=None, position: int | None = None, drift: dict | None = None) -> None:
        self.config = config
        self.models = (ManyModels(model, self._send, drift) if isinstance(model, (Fleet, RaceFleet))
                       else OneModel(model, self._send, drift))
        # The service's totals over every model: the `metrics` topic and `stats`.
        self.metrics = StreamMetrics(classes=max(2, model.n_outputs), window=config.window)
        self.metrics.samples, self.metrics.loss_total, self.metrics.correct_total = (
            self.models.totals())
        self.rejected: dict[str, int] = dict(rejected or {})
        self.ledger = Ledger(producers)
        self._undurable_messages = 0
        self._template: protocol.FrameTemplate | None = None  # the shape of the last drain's frames
        # Ingest frames are received here, reused every drain. Room for a full drain and one
        # largest message more (ZMQ_MAXMSGSIZE), so recv_into never truncates; pages are
        # only touched as they are used.
        self._inbox = memoryview(np.empty(MAX_DRAIN_BYTES + protocol.MAX_MESSAGE_BYTES, np.uint8))
        self.stopping = False
        # Names this run: versions go back down after a fresh start or a resume from an older
        # checkpoint, so clients track versions per run (in every weights and metrics body).
        self.run_id = secrets.token_hex(8)
        self.save_error: str | None = None  # why the latest checkpoint failed, until one succeeds
        self._save_failed_at = -math.inf
        self.source, self.position = source, position

        # Security first, before anything is opened: CURVE on every socket, or loopback only.
        if config.curve_secret:
            security.load_keys(config.curve_secret, secret=True)
        else:
            for name, endpoint in config.endpoints().items():
                if not security.is_loopback(endpoint):
                    raise ValueError(f"--{name} {endpoint} is not a loopback address: without "
                                     "--curve-secret and --allow-keys anyone could feed or read "
                                     "the model; turn CURVE on or bind to 127.0.0.1")
        self.prometheus = (None if config.prometheus_port is None
                           else PrometheusExporter(config.prometheus_port))
        self.context = zmq.Context()
        self.auth = (security.authenticator(self.context, config.allow_keys)
                     if config.curve_secret else None)
        self.publisher = self.context.socket(zmq.PUB)
        self.control = self.context.socket(zmq.ROUTER)
        self.control.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_MESSAGE_BYTES)
        bound = [("publish", self.publisher, config.publish), ("control", self.control, config.control)]
        self.samples = None  # with a source, the log is the only input
        if source is None:
            self.samples = self.context.socket(zmq.PULL)
            self.samples.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_MESSAGE_BYTES)
            self.samples.setsockopt(zmq.RCVHWM, INGEST_HWM)
            bound.insert(0, ("ingest", self.samples, config.ingest))
        self.acked = None
        if config.ingest_acked:
            self.acked = self.context.socket(zmq.ROUTER)
            self.acked.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_MESSAGE_BYTES)
            self.acked.setsockopt(zmq.RCVHWM, INGEST_HWM)
            bound.append(("acked", self.acked, config.ingest_acked))
        self.endpoints = {}
        self._monitors: dict[zmq.Socket, str] = {}  # CURVE: handshake monitor -> socket name
        self._refused: dict[str, Counter] = {}  # socket name -> refusals since its last log line
        self._refused_logged_at: dict[str, float] = {}
        for name, sock, endpoint in bound:
            if config.curve_secret:
                security.secure_server(sock, config.curve_secret)
                events = functools.reduce(operator.or_, REFUSALS)
                self._monitors[sock.get_monitor_socket(events)] = name
            try:
                sock.bind(endpoint)
            except zmq.ZMQError as e:
                self._close_sockets(linger=0)
                option = "--ingest-acked" if name == "acked" else f"--{name}"
                why = e.strerror.split(" (addr=")[0]  # pyzmq appends the address we name already
                raise ValueError(f"{option} {endpoint}: cannot bind: {why} (another "
                                 "service there? use another port, or tcp://127.0.0.1:* for a "
                                 "free one)") from None
            self.endpoints[name] = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        # Compiled after the binds, so that a port in use is said at once, not after seconds of
        # compiling; before the loop, so that the first sample sees no compile pause.
        self.models.warm_up()  # compiled now: the first real sample sees no compile pause

    @property
    def version(self) -> int:
        """Samples trained so far (over every model): every published state is named by it."""
        return self.models.version

    # -- the loop ------------------------------------------------------------------------------

    def run(self) -> None:
        config = self.config
        poller = zmq.Poller()
        if self.samples:
            poller.register(self.samples, zmq.POLLIN)
        source = self.source.start(self.context, self.position) if self.source else None
        if source:
            poller.register(source, zmq.POLLIN)
        poller.register(self.control, zmq.POLLIN)
        if self.acked:
            poller.register(self.acked, zmq.POLLIN)
        self.publish_state()
        published_at = saved_at = time.monotonic()
        published_version = self.version
        while not self.stopping:
            events = dict(poller.poll(POLL_MS))

            # Samples: drain what is queued, train it in arrival order.
            if self.samples in events:
                self._drain_samples()
                if config.delay_ms:
                    time.sleep(config.delay_ms / 1000)

            # The source: one batch read from the log (or an event of the source), trained the same.
            if source in events:
                self._drain_source()
                if config.delay_ms:
                    time.sleep(config.delay_ms / 1000)

            # Acknowledged samples: the same, each producer's in sequence, exactly once.
            if self.acked in events:
                self._drain_acked()
                if config.delay_ms:
                    time.sleep(config.delay_ms / 1000)

            # Control: one request per poll, so requests never starve training.
            if self.control in events:
                self._answer(self.control.recv_multipart())

            # Timers: publish on sample count or time (metrics even when idle, as a
            # heartbeat; weights only when they changed), checkpoint on time.
            now = time.monotonic()
            fresh = self.version - published_version
            if (fresh >= config.publish_every_samples
                    or now - published_at >= config.publish_every_ms / 1000):
                self.publish_state(weights=fresh > 0)
                published_at, published_version = now, self.version
            # Durability: checkpoints grouped so that many acknowledgements share one fsync.
            due = now - saved_at >= (config.durable_every_ms / 1000 if self.ledger.undurable()
                                     else config.checkpoint_every_s)
            if config.checkpoint and (
                    due or self._undurable_messages >= config.durable_every_messages) and (
                    now - self._save_failed_at >= SAVE_RETRY_S):
                self.save()
                saved_at = now
            # Refused handshakes (CURVE): logged, at most one line per socket per interval.
            if self._monitors:
                self._log_refusals(now)
        self.close()

    def _drain_samples(self) -> None:
        """Take what is queued on the plain ingest (up to ``MAX_DRAIN`` messages or bytes) and
        train it: alike frames in one step, anything else message by message."""
        frames, size = [], 0
        while len(frames) < MAX_DRAIN and size < MAX_DRAIN_BYTES:
            try:  # back to back into the inbox: no allocation, no copy to join them later
                n = self.samples.recv_into(self._inbox[size:], flags=zmq.NOBLOCK)
            except zmq.Again:
                break
            frames.append(self._inbox[size:size + n])
            size += n
        if not frames:
            return
        if len(frames) > 1 and self._train_alike(frames, self._inbox[:size]):
            return
        self._train_messages([_decode(frame) for frame in frames], frames)

    def _drain_source(self) -> None:
        """Train one batch the source read (alike frames in one step, as a drain of the ingest),
        then count its last position as applied; or publish one event of the source."""
        item = self.source.take()
        if isinstance(item, dict):
            self._send(protocol.EVENTS, item)
            return
        keys = item.keys if self.models.keyed else None  # where each message was read: its key
        if not (len(item.frames) > 1 and self._train_alike(item.frames, item.data, keys)):
            self._train_messages([_decode(frame) for frame in item.frames], item.frames, keys=keys)
        self.position = item.last

    def _drain_acked(self) -> None:
        """Take what is queued on the acknowledged ingest and train each producer's next
        messages, exactly once, in sequence (see ``Ledger``); answer the rest."""
        frames, senders, size = [], [], 0
        while len(frames) < MAX_DRAIN and size < MAX_DRAIN_BYTES:
            try:
                parts = self.acked.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            frames.append(parts[1] if len(parts) == 2 else b"")
            senders.append(parts[0])
            size += len(frames[-1])
        decoded = [self._admit(_decode(frame), frame, sender)
                   for frame, sender in zip(frames, senders)]
        self._train_messages(decoded, frames, senders)
        self._undurable_messages += len(frames)

    def _train_messages(self, decoded: list, frames: list, senders: list | None = None,
                        keys: list[str] | None = None) -> None:
        """Train the decoded messages that pass every check, in one kernel call, in arrival
        order; reject the others whole. ``decoded`` holds ``Samples``, an ``InputError`` to
        reject, or None for a message already answered; ``keys``: each message's model key
        when its frame names none."""
        good = [i for i, m in enumerate(decoded) if isinstance(m, protocol.Samples)]
        errors = {i: m for i, m in enumerate(decoded) if isinstance(m, ValueError)}
        if good:
            X, Y, bad = self.models.model.check_many([(decoded[i].x, decoded[i].y) for i in good])
            errors.update((good[j], e) for j, e in bad.items())
            trained = [i for i in good if i not in errors]
            if trained:
                refused = self._train(X, Y, [len(decoded[i].x) for i in trained],
                                      [decoded[i].model or (keys and keys[i]) or None
                                       for i in trained])
                errors.update((trained[j], e) for j, e in refused.items())
        for i in sorted(errors):  # reported in arrival order
            self._reject(errors[i], frames[i], senders[i] if senders else None)

    def _train_alike(self, frames: list[memoryview], data: memoryview,
                     keys: list[str] | None = None) -> bool:
        """Train a drain of frames alike but for their payloads (see ``protocol.FrameTemplate``;
        ``data``: the frames back to back) in one step; False, with nothing done, if any frame
        or row needs a verdict of its own. ``keys``: each frame's model key if it names none."""
        lengths = [len(frame) for frame in frames]
        run = self._template.decode(data, lengths) if self._template else None
        if run is None:
            try:
                self._template = protocol.FrameTemplate(frames[0])
            except protocol.ProtocolError:
                self._template = None
                return False
            run = self._template.decode(data, lengths)
            if run is None:
                return False
        try:
            X = self.models.model.check_inputs(run.x)
            Y = self.models.model.check_targets(run.y, len(X))
        except InputError:
            return False
        m = len(frames)
        if isinstance(run.model, protocol.KeySpans):  # one per frame
            keys = run.model
        elif run.model is not None or keys is None:
            keys = [run.model] * m
        for j, e in self._train(X, Y, [len(X) // m] * m, keys).items():
            self._reject(e, frames[j])
        return True

    def _admit(self, message, frame: bytes, sender: bytes):
        """Sequence one message of the acknowledged ingest (see ``Ledger``): it, or None if answered."""
        if isinstance(message, protocol.Samples):
            producer, seq = message.producer, message.seq
        else:
            body = _lenient_unpack(frame)
            producer, seq = body.get("producer"), body.get("seq")
            if body.get("hello") and isinstance(producer, str):
                self.ledger.senders[producer] = sender
                self._answer_producer(sender, self.ledger.status(producer, resend=True))
                return None
        if not isinstance(producer, str) or type(seq) is not int:
            if isinstance(message, protocol.Samples):
                return protocol.ProtocolError("bad_message", "the acknowledged ingest needs "
                                              "'producer' (str) and 'seq' (int) in every message")
            return message
        verdict = self.ledger.admit(producer, seq, sender)
        if verdict == "next":
            return message
        if verdict == "gap":
            self._send(protocol.EVENTS, protocol.event_body(
                "gap", producer=producer, seq=seq, expected=self.ledger.handled.get(producer, 0) + 1))
        self._answer_producer(sender, self.ledger.status(producer, resend=verdict == "gap"))
        return None

    def _train(self, X: np.ndarray, Y: np.ndarray, rows: list[int], keys: list[str | None]
               ) -> dict[int, InputError]:
        """Train checked rows, each message's on its model; the messages refused, by index.

        ``rows`` and ``keys``: each message's row count and model key (or None).

        A message is refused if it has no model (``ManyModels.place``), or if it
        diverges: a model that the batch leaves diverged is restored (its rows
        undone), and its messages are trained again one by one, so only the
        ones that diverge alone are dropped.
        """
        rows = np.array(rows)
        slots, errors = self.models.place(keys, rows)
        if errors:  # their rows leave the batch
            keep = np.repeat([j not in errors for j in range(len(keys))], rows)
            X, Y, rows = X[keep], Y[keep], np.delete(rows, list(errors))
            placed = [j for j in range(len(keys)) if j not in errors]
        else:
            placed = range(len(keys))
        if not len(X):
            return errors
        result, undone = self.models.learn(X, Y, slots)
        if result is not None and result.n:
            self.metrics.update(result)
        if undone is None:
            return errors
        for j, start, n in zip(placed, np.cumsum(rows) - rows, rows):
            if not undone[start]:  # a message's rows share their model, and its verdict
                continue
            part = slice(start, start + n)
            result, undone_alone = self.models.learn(X[part], Y[part],
                                                     None if slots is None else slots[part])
            if undone_alone is None:
                self.metrics.update(result)
            else:
                errors[j] = InputError("diverged", "training on this message left non-finite "
                                       "weights (a race: its leader's); the model from before "
                                       "it was restored")
        return errors

    def _reject(self, e: ValueError, frame: bytes, sender: bytes | None = None) -> None:
        reason = getattr(e, "reason", "invalid")
        self.rejected[reason] = self.rejected.get(reason, 0) + 1
        body = _lenient_unpack(frame)  # name the sender when the frame is readable enough
        producer, seq = body.get("producer"), body.get("seq")
        extra = {"model": body["model"]} if "model" in body else {}
        self._send(protocol.EVENTS, protocol.event_body(
            "rejected", reason=reason, error=str(e), producer=producer, seq=seq, **extra))
        if sender is not None:  # the acknowledged ingest: the producer may forget it
            status = self.ledger.status(producer) if isinstance(producer, str) else {"v": 1}
            self._answer_producer(sender, {**status, "rejected": seq, "reason": reason,
                                           "error": str(e)})

    def _answer_producer(self, sender: bytes, body: dict) -> None:
        try:
            self.acked.send_multipart([sender, protocol.pack(body)], zmq.NOBLOCK)
        except zmq.Again:  # its queue is full: it resends on its timer and gets its status then
            pass

    def _answer(self, frames: list) -> None:
        """Reply to one control request; the envelope (ROUTER identity, REQ delimiter) is kept."""
        envelope, request = frames[:-1], frames[-1]
        try:
            body = protocol.unpack(request)
            op, model = body.get("op"), body.get("model")
            if op == "ping" and model is None:
                fields = dict(version=self.version)
            elif op == "stats" and model is None:
                fields = self.metrics_body()
            elif op in ("ping", "stats", "snapshot", "predict", "models"):
                fields = self.models.answer(op, body)
            elif op == "save":
                if not self.config.checkpoint:
                    raise ValueError("no checkpoint path: start the service with --checkpoint PATH")
                if not self.save():
                    raise ValueError(f"checkpoint failed: {self.save_error}; the service keeps "
                                     f"serving and tries again every {SAVE_RETRY_S:g} s or more")
                fields = dict(path=self.config.checkpoint, version=self.version)
            else:
                raise ValueError(f"unknown op {op!r}; expected ping, snapshot, stats, predict, "
                                 "models or save")
            reply = protocol.ok(**fields, run=self.run_id)  # versions count within this run
        except ValueError as e:
            reply = protocol.error(str(e))
        self.control.send_multipart(envelope + [reply])

    # -- output --------------------------------------------------------------------------------

    def metrics_body(self) -> dict:
        body = {"v": protocol.VERSION, "version": self.version, "ts": time.time(),
                **self.metrics.summary(), "rejected": dict(self.rejected)}
        model = self.models.model
        if isinstance(model, Race):
            body["race"] = model.summary()  # every member's figures and the leader
        if self.models.keyed:
            body["models"] = len(model)
        body.update(self.models.drift.figures())
        if self.source:
            body["source"] = {**self.source.status(), "applied": self.position}
        return body

    def _send(self, topic: bytes, body: dict) -> None:
        body["run"] = self.run_id  # versions count within this run
        frame = protocol.pack(body)
        self.publisher.send_multipart([topic, frame])
        if self.source and topic.endswith(protocol.WEIGHTS):  # and to its key-value store
            self.source.publish_weights(body.get("model") or protocol.DEFAULT_MODEL, frame)

    def publish_state(self, weights: bool = True) -> None:
        self.metrics.rate()
        self.models.publish(changed=weights)
        body = self.metrics_body()
        self._send(protocol.METRICS, body)
        if self.prometheus:
            self.prometheus.update(body)

    def save(self) -> bool:
        """Checkpoint now; then every acknowledged producer learns what is durable.

        A failed write (a full or read-only disk) is logged and published as a
        ``checkpoint_failed`` event, and nothing is acknowledged; the service
        keeps serving, and the timer tries again. True if the checkpoint is on disk.
        """
        extra = {"rejected": self.rejected, "producers": self.ledger.handled,
                 "drift": self.models.drift.state()}
        if self.source:  # what the weights include of the log: a restart reads on after it
            extra["source"] = {**self.source.identity, "applied": self.position}
        try:
            checkpoint.write(self.config.checkpoint, self.models.state(), extra=extra)
        except OSError as e:
            self.save_error, self._save_failed_at = str(e), time.monotonic()
            log.error("streammlp serve: checkpoint failed: %s; still serving, trying again", e)
            self._send(protocol.EVENTS, protocol.event_body(
                "checkpoint_failed", path=self.config.checkpoint, error=str(e)))
            return False
        if self.save_error:
            log.info("streammlp serve: checkpoint written again to %s", self.config.checkpoint)
        self.save_error, self._save_failed_at = None, -math.inf
        self._undurable_messages = 0
        for sender, status in self.ledger.made_durable():
            self._answer_producer(sender, status)
        return True

    def _log_refusals(self, now: float) -> None:
        """Log the handshakes each socket refused since its last line, at most one line per
        ``config.refused_log_every_s``: a stranger retrying every 100 ms must not flood the log."""
        for monitor, name in self._monitors.items():
            while monitor.poll(0):
                kind = recv_monitor_message(monitor)["event"]
                self._refused.setdefault(name, Counter())[REFUSALS.get(kind, "failed")] += 1
        for name, why in list(self._refused.items()):
            if (now - self._refused_logged_at.get(name, -math.inf)
                    >= self.config.refused_log_every_s):
                log.warning("streammlp serve: refused %d handshake(s) on %s: %s",
                            sum(why.values()), name, ", ".join(f"{n} {k}" for k, n in why.items()))
                del self._refused[name]
                self._refused_logged_at[name] = now

    def close(self) -> None:
        """Final checkpoint and publish, then close every socket with a bounded linger."""
        if self.config.checkpoint:
            self.save()
        self.publish_state()
        if self.source:
            self.source.close()
        self._close_sockets(LINGER_MS)
        if self.prometheus:
            self.prometheus.close()

    def _close_sockets(self, linger: int) -> None:
        for monitor in self._monitors:
            monitor.close(linger=0)
        for sock in (self.samples, self.acked, self.control, self.publisher):
            if sock is not None:
                sock.close(linger=linger)
        if self.auth:
            self.auth.stop()
        self.context.term()


def _decode(frame: bytes) -> protocol.Samples | protocol.ProtocolError:
    """The frame's samples, or the error that rejects it."""
    try:
        return protocol.decode_samples(frame)
    except protocol.ProtocolError as e:
        return e


def _lenient_unpack(frame: bytes) -> dict:
    """The frame's map if it is one (to name a sender or spot a hello), else an empty one."""
    try:
        return protocol.unpack(frame)
    except ValueError:
        return {}
