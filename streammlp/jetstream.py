"""NATS JetStream: the stream layout the service reads, and writing samples into a stream.

A stream message's payload is one v1 ingest frame (:func:`protocol.encode_samples`),
exactly as on the ZeroMQ ingest; its subject is ``PREFIX.KEY`` (``samples.sensor-17``),
and a keyed service trains it on the model ``KEY`` unless the frame names one. Any
NATS client in any language can produce: publish the frame's bytes to the subject.

A stream for N trainers partitions the keys in the server, deterministically: it
takes the subjects ``PREFIX.*`` and stores ``PREFIX.KEY`` as ``PREFIX.P.KEY``, P =
``partition(N, 1)`` of the key (a subject transform), so trainer I reads only
``PREFIX.I.*``. Needs the ``nats`` extra (nats-py); the core does not.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from dataclasses import dataclass

import numpy as np

from . import protocol

PREFIX = "samples"  # the subjects' first token
CONNECT_TIMEOUT = 5  # seconds to reach the server
PUBLISH_WINDOW = 1000  # publishes awaiting the stream's acknowledgement before a producer waits
_PARTITIONED = re.compile(r"(?P<prefix>[^.*>]+)\.\{\{partition\((?P<n>\d+),1\)\}\}\.\{\{wildcard\(1\)\}\}")


def _nats():
    """The nats-py package, or an ImportError that says how to get it."""
    try:
        import nats
    except ImportError:
        raise ImportError("NATS JetStream needs nats-py: pip install 'streammlp[nats]'") from None
    return nats


@dataclass(frozen=True)
class Connection:
    """Where the NATS server is and how to log in (the NATS client's conventions).

    ``url``: ``nats://HOST:PORT`` (or ``tls://``), several separated by commas;
    ``creds``: a ``.creds`` file (JWT and NKey); ``tls_ca``, ``tls_cert``,
    ``tls_key``: PEM files for TLS (the CA alone, or with a client certificate).
    """

    url: str
    creds: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None

    def __post_init__(self) -> None:
        for server in self.servers():
            if not re.fullmatch(r"(nats|tls)://[^/\s]+", server):
                raise ValueError(f"NATS server {server!r}: expected nats://HOST:PORT (or tls://), "
                                 "several separated by commas")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("a NATS client certificate needs both --nats-tls-cert and --nats-tls-key")

    def servers(self) -> list[str]:
        return [s.strip() for s in self.url.split(",")]

    def options(self) -> dict:
        """Keyword arguments of ``nats.connect`` for this server and these credentials."""
        options: dict = {"servers": self.servers(), "connect_timeout": CONNECT_TIMEOUT}
        if self.creds:
            options["user_credentials"] = self.creds
        if self.tls_ca or self.tls_cert:
            context = ssl.create_default_context(cafile=self.tls_ca)
            if self.tls_cert:
                context.load_cert_chain(self.tls_cert, self.tls_key)
            options["tls"] = context
        return options


# -- the layout -------------------------------------------------------------------------------

def layout(partitions: int, prefix: str = PREFIX) -> dict:
    """The subjects and subject transform of a stream for ``partitions`` trainers."""
    if type(partitions) is not int or partitions < 1:
        raise ValueError(f"--partitions {partitions!r}: expected a whole number >= 1")
    if not re.fullmatch(r"[A-Za-z0-9_-]+", prefix):
        raise ValueError(f"subject prefix {prefix!r}: expected one token of A-Z a-z 0-9 _ -")
    return {"subjects": [f"{prefix}.*"],
            "transform": (f"{prefix}.*", f"{prefix}.{{{{partition({partitions},1)}}}}.{{{{wildcard(1)}}}}")}


def partitions_of(config) -> tuple[str, int] | None:
    """The prefix and partition count of a stream's config (a nats-py ``StreamConfig``) laid
    out by :func:`layout`, or None if it is not."""
    transform = config.subject_transform
    match = transform and _PARTITIONED.fullmatch(transform.dest or "")
    if not match or transform.src != f"{match['prefix']}.*":
        return None
    return match["prefix"], int(match["n"])


def shard_subject(shard: int, partitions: int, prefix: str = PREFIX) -> str:
    """The subjects trainer ``shard`` of ``partitions`` reads: ``PREFIX.I.*``."""
    if not 0 <= shard < partitions:
        raise ValueError(f"--shard {shard}/{partitions}: expected a shard from 0 to {partitions - 1}")
    return f"{prefix}.{shard}.*"


def subject_key(subject: str) -> str:
    """The model key of a message: its subject's last token (``samples.3.sensor-17`` ->
    ``sensor-17``)."""
    return subject.rsplit(".", 1)[-1]


async def ensure_stream(js, name: str, partitions: int, prefix: str = PREFIX,
                        replicas: int = 1) -> bool:
    """Create stream ``name`` laid out for ``partitions`` trainers; False if it exists so
    already, ``ValueError`` if it exists with another layout."""
    api = _nats().js.api
    wanted = layout(partitions, prefix)
    try:
        info = await js.stream_info(name)
    except _nats().js.errors.NotFoundError:
        src, dest = wanted["transform"]
        await js.add_stream(api.StreamConfig(
            name=name, subjects=wanted["subjects"], num_replicas=replicas,
            storage=api.StorageType.FILE, subject_transform=api.SubjectTransform(src=src, dest=dest)))
        return True
    if info.config.subjects == wanted["subjects"] and partitions_of(info.config) == (prefix, partitions):
        return False
    transform = info.config.subject_transform
    raise ValueError(f"stream {name} exists with another layout: subjects {info.config.subjects}, "
                     f"transform {transform.dest if transform else None}; expected "
                     f"{wanted['subjects']} -> {wanted['transform'][1]}. Changing the number of "
                     "partitions needs a new stream (see the README, 'Beyond one machine')")


async def stream_for(js, subject: str, create: str, partitions: int = 1) -> tuple[str, bool]:
    """The name of the stream that stores ``subject``, and whether it was just made: if none
    does, stream ``create`` is made for ``partitions`` trainers, the subject's first token as
    its prefix (``subject`` must then be ``PREFIX.KEY``)."""
    try:
        return await js.find_stream_name_by_subject(subject), False
    except _nats().js.errors.NotFoundError:
        pass
    prefix, _, key = subject.partition(".")
    if not key or "." in key:
        raise ValueError(f"no stream stores {subject}, and a new one takes PREFIX.KEY subjects "
                         "(such as samples.sensor-17): publish to one, or make the stream first")
    await ensure_stream(js, create, partitions, prefix)
    return create, True


def call(connection: Connection, work):
    """Connect, return ``await work(js)`` (``js``: a JetStream context), close: one-off jobs."""
    async def main():
        nc = await _connect(connection)
        try:
            return await work(nc.jetstream())
        finally:
            await nc.close()
    return asyncio.run(main())


async def _connect(connection: Connection):
    """A connection that gives up at once if the server is not there: for commands."""
    try:
        return await _nats().connect(**connection.options(), allow_reconnect=False,
                                     max_reconnect_attempts=0)
    except Exception as e:  # nats-py raises several kinds here; all mean the same to a user
        raise OSError(f"cannot reach NATS at {connection.url}: {type(e).__name__}: {e}") from None


# -- writing into a stream ----------------------------------------------------------------------

class StreamProducer:
    """Publish samples into a JetStream stream, one ingest frame per message.

    ``subject``: ``PREFIX.KEY``; a keyed service trains the messages on model
    ``KEY``. Publishes are acknowledged by the stream, ``PUBLISH_WINDOW`` at
    most awaiting; :meth:`flush` waits for all and returns the last stream
    sequence, or raises if any was refused. A payload is the frame of
    :func:`streammlp.protocol.encode_samples`: ``{"v": 1, "x": X, "y": Y}``.

    Examples
    --------
    >>> with StreamProducer("nats://127.0.0.1:4222", "samples.sensor-17") as producer:  # doctest: +SKIP
    ...     producer.send(X, y)
    ...     last = producer.flush()
    """

    def __init__(self, connection: Connection | str, subject: str) -> None:
        _nats()
        if not re.fullmatch(r"[^.*>\s]+(\.[^.*>\s]+)*", subject):
            raise ValueError(f"subject {subject!r}: expected tokens separated by dots, no wildcards "
                             "(such as samples.sensor-17)")
        self.subject = subject
        self.connection = connection if isinstance(connection, Connection) else Connection(connection)
        self._loop = asyncio.new_event_loop()
        self._acks: list = []
        self.last_seq = 0
        try:
            self._nc = self._loop.run_until_complete(_connect(self.connection))
        except OSError:
            self._loop.close()
            raise
        self.js = self._nc.jetstream(publish_async_max_pending=PUBLISH_WINDOW)

    def run(self, coroutine):
        """Run one coroutine of this producer's connection (``js``), e.g. to look at streams."""
        return self._loop.run_until_complete(coroutine)

    def send(self, X, y, subject: str | None = None) -> None:
        """Publish one message of rows ``X`` and targets ``y`` (to ``subject``, if given, instead
        of the producer's: another key)."""
        self.send_frame(protocol.encode_samples(np.asarray(X), np.asarray(y)), subject)

    def send_frame(self, frame: bytes, subject: str | None = None) -> None:
        """Publish one encoded frame as it is."""
        if len(self._acks) >= PUBLISH_WINDOW:
            self.flush()
        self._acks.append(self.run(self.js.publish_async(subject or self.subject, frame)))

    def flush(self) -> int:
        """Wait until the stream has stored every message sent; the last one's stream sequence."""
        acks, self._acks = self._acks, []
        if acks:
            results = self.run(asyncio.gather(*acks, return_exceptions=True))
            failed = [r for r in results if isinstance(r, BaseException)]
            if failed:
                raise OSError(f"the stream refused {len(failed)} of {len(acks)} messages on "
                              f"{self.subject}: {failed[0]!r}")
            self.last_seq = max(self.last_seq, max(ack.seq for ack in results))
        return self.last_seq

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self.run(self._nc.close())
            self._loop.close()

    def __enter__(self) -> "StreamProducer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"StreamProducer({self.connection.url!r}, {self.subject!r})"
