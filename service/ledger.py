"""Sequence numbers of the acknowledged ingest: each producer's messages trained once, in order.

Every message on the acknowledged ingest names its ``producer`` and a
per-producer ``seq`` that goes up by one. A message is *handled* (trained, or
rejected) only when its ``seq`` is the next one expected; an older one is a
duplicate (a resend) and is not trained again; a newer one means messages went
missing, so it is refused and the producer is asked to resend from the gap
(go-back-N). A producer may forget a message once its ``seq`` is *durable*:
handled and included in a checkpoint on disk.
"""

from __future__ import annotations


class Ledger:
    """Per producer: the highest ``seq`` handled, the highest durable, and where to answer."""

    def __init__(self, handled: dict[str, int] | None = None) -> None:
        self.handled: dict[str, int] = dict(handled or {})
        self.durable: dict[str, int] = dict(self.handled)  # what a checkpoint on disk holds
        self.senders: dict[str, bytes] = {}  # ROUTER identity of each producer's latest message

    def admit(self, producer: str, seq: int, sender: bytes) -> str:
        """``"next"`` (handle it now), ``"duplicate"`` or ``"gap"``."""
        self.senders[producer] = sender
        expected = self.handled.get(producer, 0) + 1
        if seq == expected:
            self.handled[producer] = seq
            return "next"
        return "duplicate" if seq < expected else "gap"

    def status(self, producer: str, **fields) -> dict:
        """What the service tells a producer: durable through ``durable``, expecting ``next``."""
        return {"v": 1, "producer": producer, "durable": self.durable.get(producer, 0),
                "next": self.handled.get(producer, 0) + 1, **fields}

    def undurable(self) -> bool:
        return any(seq > self.durable.get(p, 0) for p, seq in self.handled.items())

    def made_durable(self) -> list[tuple[bytes, dict]]:
        """After a checkpoint of the current state: every producer's new status, to send it."""
        news = []
        for producer, seq in self.handled.items():
            if seq > self.durable.get(producer, 0):
                self.durable[producer] = seq
                if producer in self.senders:
                    news.append((self.senders[producer], self.status(producer)))
        return news
