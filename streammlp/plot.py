"""Learning curves: rolling accuracy and loss against samples, from recorded metrics messages."""

from __future__ import annotations

import json
import math
import os


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Metrics messages recorded one JSON object per line (``streammlp watch --jsonl``)."""
    rows = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}, line {number}: not JSON ({e})") from None
    if not rows:
        raise ValueError(f"{path} holds no metrics messages")
    return rows


def detected_drifts(history: list[dict]) -> list[int]:
    """The versions of every drift the service reported in a run of ``metrics`` messages
    (each carries the latest few, so a drift is in several), in order.

    >>> detected_drifts([{"drift_versions": [5]}, {}, {"drift_versions": [5, 9]}])
    [5, 9]
    """
    return sorted({v for m in history for v in m.get("drift_versions", ())})


def learning_curve(history: list[dict], path: str | os.PathLike, title: str = "",
                   drift_at: int | None = None) -> None:
    """Write a PNG of rolling and cumulative accuracy and loss against samples trained.

    ``drift_at`` marks where the stream's concept was made to change (known to
    the caller); the drifts the service detected (``drift_versions`` in the
    messages) are marked too.

    Needs matplotlib (``pip install 'streammlp[demo]'``).
    """
    try:
        import matplotlib
    except ImportError:
        raise RuntimeError("plotting needs matplotlib: pip install 'streammlp[demo]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not any(m.get("samples") for m in history):
        raise ValueError(f"no samples were trained in these {len(history)} metrics messages; "
                         "nothing to plot")

    def series(name: str) -> list[float]:
        return [math.nan if m[name] is None else m[name] for m in history]  # JSON null is NaN

    samples = [m["samples"] for m in history]
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(8, 6), constrained_layout=True)
    top.plot(samples, series("rolling_accuracy"), label="rolling")
    top.plot(samples, series("accuracy"), label="cumulative", alpha=0.7)
    top.set_ylabel("prequential accuracy")
    top.set_ylim(0, 1)
    bottom.plot(samples, series("rolling_loss"), label="rolling")
    bottom.plot(samples, series("loss"), label="cumulative", alpha=0.7)
    bottom.set_ylabel("prequential loss")
    bottom.set_xlabel("samples trained")
    detected = detected_drifts(history)
    for ax in (top, bottom):
        if drift_at is not None:
            ax.axvline(drift_at, color="red", linestyle="--", label="drift")
        for k, version in enumerate(detected):
            ax.axvline(version, color="darkorange", linestyle=":",
                       label="drift detected" if k == 0 else None)
        ax.grid(alpha=0.3)
        ax.legend(loc="best")
    top.set_title(title)
    fig.savefig(path, dpi=100)
    plt.close(fig)
