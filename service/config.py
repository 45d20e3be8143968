"""The trainer's settings, besides its model: one frozen object, defaults written once.

``streammlp serve`` takes its option defaults from :class:`TrainerConfig` and
builds one from the options; each field is the option of the same name
(``publish_every_ms`` is ``--publish-every-ms``), which is how errors name it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields

from streammlp import protocol


ENDPOINT = re.compile(r"(tcp|ipc|inproc)://\S+")  # what the service can bind


@dataclass(frozen=True)
class TrainerConfig:
    """Endpoints, timers, durability, security and keying of one trainer service.

    Invalid values raise ``ValueError`` naming the option, so a service refuses
    them at start instead of failing on its first sample.
    """

    ingest: str = protocol.INGEST_ENDPOINT  # PULL: samples in
    publish: str = protocol.PUBLISH_ENDPOINT  # PUB: weights, metrics, events out
    control: str = protocol.CONTROL_ENDPOINT  # ROUTER: requests
    ingest_acked: str | None = None  # ROUTER: acknowledged samples (needs checkpoint)
    publish_every_samples: int = 10_000
    publish_every_ms: float = 200.0
    window: int = 1000  # samples in the rolling metrics window
    checkpoint: str | None = None  # file the state is saved to, atomically
    checkpoint_every_s: float = 30.0
    durable_every_ms: float = 50.0  # with unacknowledged samples, checkpoint at least this often
    durable_every_messages: int = 1000  # ... or after this many acknowledged-ingest messages
    curve_secret: str | None = None  # the service's .key_secret file: CURVE on every socket
    allow_keys: str | None = None  # directory of allowed clients' public .key files
    refused_log_every_s: float = 10.0  # CURVE: one log line of refusals per socket at most this often
    prometheus_port: int | None = None
    delay_ms: float = 0.0  # sleep after each drain: a slow trainer, for back-pressure tests

    def __post_init__(self) -> None:
        for name, endpoint in self.endpoints().items():
            if not ENDPOINT.fullmatch(endpoint):
                raise ValueError(f"--{name} {endpoint}: not a ZeroMQ endpoint; expected "
                                 "transport://address, such as tcp://127.0.0.1:5555")
        positive = ("publish_every_samples", "publish_every_ms", "window", "checkpoint_every_s",
                    "durable_every_ms", "durable_every_messages", "refused_log_every_s")
        for name in positive:
            value = getattr(self, name)
            if not value > 0:  # also refuses NaN
                raise ValueError(f"{option(name)} {value}: expected a positive number")
        if not self.delay_ms >= 0:
            raise ValueError(f"{option('delay_ms')} {self.delay_ms}: expected 0 or more")
        if self.prometheus_port is not None and not 0 <= self.prometheus_port <= 65535:
            raise ValueError(f"--prometheus-port {self.prometheus_port}: expected 0 (any free "
                             "port) to 65535")
        if self.ingest_acked and not self.checkpoint:
            raise ValueError("--ingest-acked acknowledges what is on disk: it needs --checkpoint PATH")
        if bool(self.curve_secret) != bool(self.allow_keys):
            raise ValueError("CURVE needs both --curve-secret FILE and --allow-keys DIR")

    def endpoints(self) -> dict[str, str]:
        """The endpoints to bind, by option name (without the acknowledged ingest when off)."""
        named = {"ingest": self.ingest, "publish": self.publish, "control": self.control,
                 "ingest-acked": self.ingest_acked}
        return {name: endpoint for name, endpoint in named.items() if endpoint}


def option(name: str) -> str:
    """The command-line option of a field: ``publish_every_ms`` -> ``--publish-every-ms``."""
    return "--" + name.replace("_", "-")


FIELDS = tuple(f.name for f in fields(TrainerConfig))
