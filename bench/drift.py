"""The drift detector's false alarms on stationary error streams, and its delay after a jump.

For each setting (ours, ``streammlp.drift.PageHinkley()``, and River's
defaults, ``delta=0.005, threshold=50, alpha=0.9999``): the drifts raised on
``--streams`` stationary 0/1 error streams of 200,000 rows at each error rate
(false alarms), and the rows from an abrupt jump of the error rate to its
first detection (median and worst of ``--streams // 2`` streams; a stream
whose jump is never detected counts as missed). Seeds fixed: stream ``i``
uses ``numpy.random.default_rng(i)`` (jumps: ``1000 + i``). Also the
detector's cost per row, against what it watches: the default race
(``Race.grid(8, 1)``, without its own test) learning the same number of rows;
and, since a race runs the test once per batch, the race learning one row a
call with its test against without it.

    python bench/drift.py              # 100 streams per rate, about a minute
    python bench/drift.py --streams 10
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from streammlp import Race
from streammlp.drift import DriftDetector, PageHinkley

RATES = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5)  # stationary error rates
JUMPS = ((0.05, 0.5), (0.1, 0.4), (0.3, 0.6), (0.1, 0.2))  # error rate before and after
LENGTH = 200_000  # rows of a stationary stream
SETTINGS = {"ours": PageHinkley(),
            "River's defaults": PageHinkley(delta=0.005, threshold=50, alpha=1 - 0.0001)}


def false_alarms(settings: PageHinkley, rate: float, streams: int) -> int:
    return sum(len(DriftDetector(settings).update_errors(np.random.default_rng(i).random(LENGTH) < rate))
               for i in range(streams))


def delays(settings: PageHinkley, before: float, after: float, streams: int) -> list[float]:
    """Rows from the jump (at 10,000) to the first detection after it, per stream (inf: missed)."""
    out = []
    for i in range(streams):
        x = np.random.default_rng(1000 + i).random(20_000) < np.repeat([before, after], 10_000)
        rows = DriftDetector(settings).update_errors(x).rows
        rows = rows[rows >= 10_000]
        out.append(float(rows[0] - 10_000) if len(rows) else float("inf"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams", type=int, default=100, help="streams per rate (default 100)")
    args = parser.parse_args()
    if args.streams < 2:
        parser.error(f"--streams {args.streams}; expected at least 2")
    for name, settings in SETTINGS.items():
        print(f"{name}: {settings}")
        alarms = {rate: false_alarms(settings, rate, args.streams) for rate in RATES}
        total = sum(alarms.values())
        print(f"  false alarms in {args.streams} streams of {LENGTH:,} rows, by error rate: "
              + ", ".join(f"{r}: {a}" for r, a in alarms.items())
              + f"  ({total / (len(RATES) * args.streams * LENGTH):.2g} per row)")
        for before, after in JUMPS:
            d = delays(settings, before, after, args.streams // 2)
            missed = sum(v == float("inf") for v in d)
            print(f"  error rate {before} -> {after}: detected after {statistics.median(d):.0f} rows "
                  f"(median), {max(v for v in d if v != float('inf')):.0f} (worst)"
                  + (f", missed {missed}" if missed else ""))
    # Cost per row, side by side with the race it watches (alternated, median of pairs).
    rng = np.random.default_rng(0)
    X = rng.normal(size=(100_000, 8))
    y = (X[:, 0] + X[:, 1] > 0).astype(float)
    race, detector = Race.grid(8, 1, seed=0, drift=None), DriftDetector()
    result = race.learn(X, y)  # compiled (or loaded from cache) before timing
    detector.update(result.predicted, result.actual)
    watching, learning = [], []
    for _ in range(7):
        start = time.perf_counter()
        detector.update(result.predicted, result.actual)
        watching.append(time.perf_counter() - start)
        start = time.perf_counter()
        race.learn(X, y)
        learning.append(time.perf_counter() - start)
    print(f"cost: {statistics.median(watching) / len(X) * 1e9:.1f} ns per row (the race: "
          f"{statistics.median(learning) / len(X) * 1e9:,.0f}), "
          f"{statistics.median(w / l for w, l in zip(watching, learning)):.2%} of the default race's "
          "learning of the same rows (median of 7 alternated pairs)")
    # A race learning a row a call pays the test's call every row.
    races = [Race.grid(8, 1, seed=0), Race.grid(8, 1, seed=0, drift=None)]
    rows = [(races[0].check_inputs(X[i:i + 1]), races[0].check_targets(y[i:i + 1], 1))
            for i in range(2000)]
    seconds = [[], []]
    for _ in range(7):
        for race, spent in zip(races, seconds):
            start = time.perf_counter()
            for row in rows:
                race.learn_checked(*row)
            spent.append(time.perf_counter() - start)
    print(f"a race learning one row a call: {statistics.median(seconds[0]) / len(rows) * 1e6:.1f} us "
          f"a call with its test, {statistics.median(seconds[1]) / len(rows) * 1e6:.1f} without; "
          f"ratio {statistics.median(a / b for a, b in zip(*seconds)):.3f} (median of 7 alternated "
          "pairs of 2,000 calls)")


if __name__ == "__main__":
    main()
