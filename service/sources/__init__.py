"""Sources: where a trainer reads samples from a durable log, from a position, exactly once.

The ZeroMQ ingest is pushed to; a source is read. It runs its client in its
own thread and hands the trainer's poll loop what it read, in log order,
through :class:`Handoff`: each item is queued and then signalled on an inproc
socket the loop polls beside its others, one signal per item. So the loop stays
the one place a sample goes to a weight update, and control and publish keep
answering whatever the log's server does. ``jetstream.JetStreamSource`` is one;
a Kafka source would implement the same six members:

- ``start(context, after)``: connect in the background and read from after the
  log position ``after`` (the checkpoint's), or from where the options say if
  None; the socket the loop polls.
- ``take()``: one item after each signal, a :class:`Batch` or an event body
  (a dict, published on ``events``).
- ``identity``: what a checkpoint's position belongs to (the log, its filter).
- ``status()``: connected or not, the position read, what is behind, errors (``metrics``).
- ``publish_weights(key, frame)``: keep a model's newest ``weights`` body in the log's
  key-value store, if asked to (else nothing).
- ``close()``: stop the thread and the client.
"""

from __future__ import annotations

import itertools
import queue
from dataclasses import dataclass

import zmq

MAX_QUEUED = 4  # batches read ahead of the trainer before the reader waits
_names = itertools.count()


@dataclass
class Batch:
    """Messages read from the log, in its order: payloads back to back in ``data``, each one
    also a view in ``frames``; ``keys``: each message's model key from where it was read (a
    subject's last token); ``last``: the log position of the last message."""

    frames: list[memoryview]
    data: memoryview
    keys: list[str]
    last: int

    @classmethod
    def of(cls, payloads: list[bytes], keys: list[str], last: int) -> "Batch":
        data = memoryview(b"".join(payloads))
        frames, at = [], 0
        for payload in payloads:
            frames.append(data[at:at + len(payload)])
            at += len(payload)
        return cls(frames, data, keys, last)


class Handoff:
    """Items from a reader thread to the poll loop: a bounded queue plus an inproc signal."""

    def __init__(self, context: zmq.Context) -> None:
        self.context = context
        self.address = f"inproc://streammlp-source-{next(_names)}"
        self.items: queue.Queue = queue.Queue(MAX_QUEUED)
        self.wake = context.socket(zmq.PAIR)  # the loop's end, polled
        self.wake.bind(self.address)
        self._signal = None  # the reader's end, made in its thread

    def put(self, item) -> bool:
        """From the reader: queue ``item`` and signal it; False (nothing done) if the queue is
        full, so that an asyncio reader can wait without blocking its loop."""
        try:
            self.items.put_nowait(item)
        except queue.Full:
            return False
        if self._signal is None:
            self._signal = self.context.socket(zmq.PAIR)
            self._signal.setsockopt(zmq.SNDHWM, 0)  # never drop a signal: the queue bounds them
            self._signal.connect(self.address)
        self._signal.send(b"")
        return True

    def take(self):
        """From the loop, when ``wake`` is readable: the next item."""
        self.wake.recv(zmq.NOBLOCK)
        return self.items.get_nowait()

    def close_reader(self) -> None:
        if self._signal is not None:
            self._signal.close(linger=0)

    def close(self) -> None:
        self.wake.close(linger=0)
