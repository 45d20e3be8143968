"""Optional Prometheus exposition of the service's metrics (``--prometheus-port``).

Needs ``prometheus_client`` (``pip install 'streammlp[prometheus]'``). Figures
are refreshed each time the service publishes ``metrics``.
"""

from __future__ import annotations


class PrometheusExporter:
    """Serves ``/metrics`` over HTTP on ``addr:port`` (port 0: a free one, see ``.port``)."""

    def __init__(self, port: int, addr: str = "127.0.0.1") -> None:
        try:
            from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
        except ImportError:
            raise ValueError("--prometheus-port needs prometheus_client: "
                             "pip install 'streammlp[prometheus]'") from None
        registry = CollectorRegistry()
        self.samples = Counter("streammlp_samples", "Samples trained", registry=registry)
        self.rejected = Counter("streammlp_rejected", "Messages rejected, by reason", ["reason"],
                                registry=registry)
        self.gauges = {key: Gauge(f"streammlp_{key}", text, registry=registry) for key, text in (
            ("loss", "Mean prequential loss since the start"),
            ("rolling_loss", "Mean prequential loss over the rolling window"),
            ("accuracy", "Prequential accuracy since the start"),
            ("rolling_accuracy", "Prequential accuracy over the rolling window"),
            ("samples_per_s", "Samples trained per second, over the last publish interval"))}
        self._counted = {"samples": 0}
        self.server, _ = start_http_server(port, addr, registry=registry)
        self.url = f"http://{addr}:{self.server.server_port}/metrics"

    def update(self, body: dict) -> None:
        """Bring every figure up to a ``metrics`` body; counters only ever go up."""
        self.samples.inc(body["samples"] - self._counted["samples"])
        self._counted["samples"] = body["samples"]
        for reason, count in body["rejected"].items():
            self.rejected.labels(reason).inc(count - self._counted.get(reason, 0))
            self._counted[reason] = count
        for key, gauge in self.gauges.items():
            gauge.set(body[key])

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
