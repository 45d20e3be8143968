"""A live view of a training stream's metrics: rich on a terminal, plain lines elsewhere."""

from __future__ import annotations

import sys
import time

PLAIN_EVERY_S = 1.0  # plain output: at most one line per second
RATE_EVERY_S = 1.0  # samples/s shown: samples trained over at least this long, from the messages


def _figure(value, fmt: str) -> str:
    return "-" if value is None or value != value else format(value, fmt)  # value != value: NaN


def describe(m: dict, rate: float | None = None) -> str:
    """One line of the figures worth watching in a ``metrics`` message (``rate``: samples/s
    to show instead of the message's own)."""
    rejected = sum(m.get("rejected", {}).values())
    rate = m["samples_per_s"] if rate is None else rate
    return (f"{m['samples']:>10,} samples  {_figure(rate, ',.0f'):>9}/s  "
            f"accuracy {_figure(m['accuracy'], '.1%')} (rolling {_figure(m['rolling_accuracy'], '.1%')})  "
            f"loss {_figure(m['loss'], '.4f')} (rolling {_figure(m['rolling_loss'], '.4f')})"
            + (f"  rejected {rejected:,}" if rejected else "")
            + (f"  drifts {drifts(m)}" if m.get("drifts") else ""))


def drifts(m: dict) -> str:
    """The drifts a ``metrics`` message reports: how many, and where the latest was.

    >>> drifts({"drifts": 2, "drift_versions": [6106, 20417]})
    '2 (latest at 20,417)'
    """
    latest = m.get("drift_versions") or []
    return f"{m.get('drifts', 0):,}" + (f" (latest at {latest[-1]:,})" if latest else "")


class LiveDisplay:
    """Shows each ``metrics`` message as it comes; use as a context manager.

    On a terminal with ``rich`` installed, a table redrawn in place; otherwise
    (a pipe, a log file, no rich) a plain line at most once a second, and only
    when something changed. Samples/s is measured here, over a second or more
    of messages: the service's own figure covers only the last publish
    interval, mostly idle between bursts.
    """

    def __init__(self, title: str, total: int | None = None, stream=None) -> None:
        self.title, self.total = title, total
        self.stream = stream or sys.stdout
        self._live = None
        self._printed_at = 0.0
        self._printed = ""
        self._mark: tuple[float, int] | None = None  # (ts, samples) the rate is measured from
        self._rate: float | None = None
        if self.stream.isatty():
            try:
                from rich.live import Live
            except ImportError:
                Live = None
            if Live is not None:
                self._live = Live(self._render(None), refresh_per_second=8, transient=False)

    def __enter__(self) -> "LiveDisplay":
        if self._live is not None:
            self._live.__enter__()
        else:
            print(self.title, file=self.stream, flush=True)
        return self

    def __exit__(self, *exc) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)

    def update(self, m: dict) -> None:
        self._measure(m)
        if self._live is not None:
            self._live.update(self._render(m))
        elif time.monotonic() - self._printed_at >= PLAIN_EVERY_S:
            line = describe(m, self._rate)
            if line != self._printed:
                self._printed_at, self._printed = time.monotonic(), line
                print(line, file=self.stream, flush=True)

    def _measure(self, m: dict) -> None:
        """Samples/s over the messages of the last ``RATE_EVERY_S`` or more."""
        if self._mark is None or m["samples"] < self._mark[1]:  # the first, or a restarted service
            self._mark, self._rate = (m["ts"], m["samples"]), None
        elif m["ts"] - self._mark[0] >= RATE_EVERY_S:
            self._rate = (m["samples"] - self._mark[1]) / (m["ts"] - self._mark[0])
            self._mark = (m["ts"], m["samples"])

    def _render(self, m: dict | None):
        from rich.progress_bar import ProgressBar
        from rich.table import Table

        table = Table(title=self.title, show_header=False, box=None, title_justify="left")
        table.add_column(style="bold")
        table.add_column(justify="right")
        if m is None:
            table.add_row("waiting for the first metrics", "")
            return table
        done = f"{m['samples']:,}" + (f" / {self.total:,}" if self.total else "")
        table.add_row("samples", done)
        if self.total:
            table.add_row("", ProgressBar(total=self.total, completed=min(m["samples"], self.total), width=40))
        table.add_row("samples/s", _figure(m["samples_per_s"] if self._rate is None else self._rate,
                                           ",.0f"))
        table.add_row("accuracy", _figure(m["accuracy"], ".2%"))
        table.add_row(f"rolling accuracy (last {m.get('window', '?')})", _figure(m["rolling_accuracy"], ".2%"))
        table.add_row("loss", _figure(m["loss"], ".4f"))
        table.add_row("rolling loss", _figure(m["rolling_loss"], ".4f"))
        rejected = m.get("rejected") or {}
        table.add_row("rejected", ", ".join(f"{k} {v:,}" for k, v in rejected.items()) or "0")
        if "drifts" in m:
            table.add_row("drifts detected", drifts(m))
        return table
