"""Race and input scaling: the race's speed against one network, and accuracy with defaults.

Two parts, in one run:

- **Speed.** Samples/s of ``Race.grid(inputs, classes)`` (its K = 6 members:
  learning rates 0.2, 1 x hidden widths 8, 32, and linear members at 0.005,
  0.05; figures recorded before 2026-11-30 night had 9, with lr 0.05 and a linear
  member at 0.01) against one network of the race's widest kind trained
  alone (target: at least 0.8 x 1/K of its rate), against all K members
  trained alone one after another (the cost of racing them in one call), and
  against the same race without its linear members (their cost). Whole batches
  sized to take about 0.3 s, timed in ``--repeats`` rounds (one timing of each
  per round) after a warm-up; medians.
- **Accuracy.** Prequential accuracy (each sample predicted before it is
  learned) and wall time, with defaults and no per-stream tuning, on real
  streams that ship inside installed packages (River's Phishing, Bananas and
  ImageSegments; scikit-learn's digits and breast cancer, in their stored
  order) and on drifting synthetic streams (``streammlp.signals``): one
  default network ``MLP([inputs, 32, outputs])``, the same with
  ``scale="standard"``, the race, and, in hindsight, the race's best member;
  beside River's ``LogisticRegression`` (alone, and after River's
  ``StandardScaler`` as River's documentation pipes it; one-vs-rest for
  several classes) and ``HoeffdingTreeClassifier``. Our models learn each
  stream in one ``learn`` call after a warm-up call on a copy (compilation is
  not timed); River's run ``predict_one`` then ``learn_one`` per sample on
  dicts built beforehand. Every model starts afresh for each run; on streams
  shorter than 10,000 samples each runs 3 times and the median time is kept.

Run from the repository root (River and scikit-learn are optional: streams and
models that need a missing package are skipped)::

    pip install river scikit-learn
    python bench/race.py               # both parts, about 2 minutes
    python bench/race.py --quick       # smaller synthetic streams, shorter timings
    python bench/race.py --part speed  # or accuracy

Timings are printed, never asserted: machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from typing import Callable, Iterator

import numpy as np

from streammlp import MLP, Race, signals
from streammlp.race import HIDDEN, LINEAR_LRS, LRS

SPEED_SIZES = ((8, 2), (32, 4), (64, 10))  # (inputs, classes)
SECONDS = 0.3  # target duration of one speed timing; --quick uses 0.05
SYNTHETIC = 40_000  # samples per synthetic stream, drift halfway; --quick uses 10,000
RUNS_SHORT = 3  # runs of each model on a stream of fewer than 10,000 samples (median time)


# -- streams: (X, labels 0..classes-1) ------------------------------------------------------------

def river_stream(name: str) -> tuple[np.ndarray, np.ndarray]:
    """One of River's bundled datasets as arrays, in its stored order; classes numbered in sorted order."""
    from river import datasets
    rows = list(getattr(datasets, name)())
    keys = list(rows[0][0])
    X = np.array([[float(x[k]) for k in keys] for x, _ in rows])
    names = sorted({y for _, y in rows}, key=str)
    return X, np.array([names.index(y) for _, y in rows])


def sklearn_stream(name: str) -> tuple[np.ndarray, np.ndarray]:
    """A dataset bundled with scikit-learn (``load_<name>``), in its stored order."""
    import sklearn.datasets
    data = getattr(sklearn.datasets, f"load_{name}")()
    return data.data.astype(float), data.target.astype(np.int64)


def signal_stream(make: Callable[..., Iterator], n: int, **options) -> tuple[np.ndarray, np.ndarray]:
    """``n`` samples of a ``streammlp.signals`` generator, with drift at ``n // 2``."""
    parts = list(make(n, drift_at=n // 2, seed=0, **options))
    return np.concatenate([X for X, _ in parts]), np.concatenate([y for _, y in parts]).astype(np.int64)


def streams(synthetic: int) -> list[tuple[str, str, Callable[[], tuple[np.ndarray, np.ndarray]]]]:
    """(name, package it needs or '', loader) of every stream, real ones first."""
    return [
        ("Phishing", "river", lambda: river_stream("Phishing")),
        ("Bananas", "river", lambda: river_stream("Bananas")),
        ("ImageSegments", "river", lambda: river_stream("ImageSegments")),
        ("digits", "sklearn", lambda: sklearn_stream("digits")),
        ("breast_cancer", "sklearn", lambda: sklearn_stream("breast_cancer")),
        ("waveforms+drift", "", lambda: signal_stream(signals.waveforms, synthetic)),
        ("bands+drift", "", lambda: signal_stream(signals.bands, synthetic)),
        ("points+drift", "", lambda: signal_stream(signals.points, synthetic)),
    ]


def available(package: str) -> bool:
    if not package:
        return True
    try:
        __import__(package)
    except ImportError:
        return False
    return True


# -- models: each returns (prequential accuracy, seconds) -----------------------------------------

def outputs_of(classes: int) -> int:
    return 1 if classes == 2 else classes


def ours(model, X: np.ndarray, y: np.ndarray, classes: int) -> tuple[float, float]:
    """Prequential accuracy and seconds of one ``learn`` call over the whole stream, after a
    warm-up on a copy (so compilation, or loading it from Numba's cache, is not timed)."""
    targets = y.astype(float) if outputs_of(classes) == 1 else y
    copy.deepcopy(model).learn(X[:1], targets[:1])
    start = time.perf_counter()
    result = model.learn(X, targets)
    return result.accuracy, time.perf_counter() - start


def river_model(kind: str, classes: int):
    from river import linear_model, multiclass, preprocessing, tree
    if kind == "tree":
        return tree.HoeffdingTreeClassifier()
    lr = linear_model.LogisticRegression()
    if classes > 2:
        lr = multiclass.OneVsRestClassifier(lr)
    return preprocessing.StandardScaler() | lr if kind == "scaled_lr" else lr


def river(kind: str, X: np.ndarray, y: np.ndarray, classes: int) -> tuple[float, float]:
    """Prequential accuracy and seconds of River's predict_one/learn_one over dict rows."""
    model = river_model(kind, classes)
    rows = [dict(enumerate(x)) for x in X.tolist()]
    labels = y.tolist() if classes > 2 else [bool(v) for v in y]
    correct = 0
    start = time.perf_counter()
    for x, label in zip(rows, labels):
        correct += model.predict_one(x) == label
        model.learn_one(x, label)
    return correct / len(rows), time.perf_counter() - start


def median_run(run: Callable[[], tuple[float, float]], runs: int) -> tuple[float, float]:
    """Accuracy (the same every run: everything is seeded) and median seconds of ``runs`` runs."""
    results = [run() for _ in range(runs)]
    return results[0][0], statistics.median(s for _, s in results)


# -- the two parts --------------------------------------------------------------------------------

def speed(target: float, repeats: int) -> None:
    print(f"Speed: samples/s, median of {repeats} rounds (Race.grid defaults: lr "
          f"{', '.join(map(str, LRS))} x hidden {', '.join(map(str, HIDDEN))}; linear lr "
          f"{', '.join(map(str, LINEAR_LRS))})")
    print(f"{'net':>8} {'race/s':>10} {'one/s':>10} {'race x K / one':>15} {'members alone/s':>16} "
          f"{'race / alone':>13} {'no linear/s':>12} {'race / no linear':>17}")
    for inputs, classes in SPEED_SIZES:
        outputs = outputs_of(classes)
        race = Race.grid(inputs, outputs, seed=0)
        hidden_only = Race.grid(inputs, outputs, linear=(), seed=0)
        widest = copy.deepcopy(max(race.members, key=lambda m: m.params.size))  # the widest kind
        alone = [copy.deepcopy(m) for m in race.members]
        runs = {"race": race.learn, "one": widest.learn,
                "alone": lambda X, y: [m.learn(X, y) for m in alone], "no linear": hidden_only.learn}
        rng = np.random.default_rng(0)
        # One batch per contender, sized to take about `target` seconds; then the timings
        # in rounds (race, one, alone, no linear, race, ...), so a change of load hits all alike.
        batches = {}
        for name, learn in runs.items():
            n = 64
            learn(rng.normal(size=(n, inputs)), rng.integers(0, classes, n))  # warm-up: compiles
            while True:
                X, y = rng.normal(size=(n, inputs)), rng.integers(0, classes, n)
                if (elapsed := seconds(learn, X, y)) >= target / 10:
                    break
                n *= 4
            n = max(1, round(n * target / elapsed))
            batches[name] = rng.normal(size=(n, inputs)), rng.integers(0, classes, n)
        rates = {name: [] for name in runs}
        for _ in range(repeats):
            for name, learn in runs.items():
                X, y = batches[name]
                rates[name].append(len(X) / seconds(learn, X, y))
        K = len(race.members)
        scaled = [r * K / o for r, o in zip(rates["race"], rates["one"])]
        versus = [r / a for r, a in zip(rates["race"], rates["alone"])]
        linear = [r / h for r, h in zip(rates["race"], rates["no linear"])]
        median = {name: statistics.median(v) for name, v in rates.items()}
        print(f"{inputs:>3}-*-{outputs:<2} {median['race']:>10,.0f} {median['one']:>10,.0f} "
              f"{statistics.median(scaled):>15.2f} {median['alone']:>16,.0f} "
              f"{statistics.median(versus):>13.2f} {median['no linear']:>12,.0f} "
              f"{statistics.median(linear):>17.2f}")
    print(f"race x K / one: the race's rate times its K = {K} members over one {max(HIDDEN)}-wide "
          "member's (target >= 0.8);\n"
          "race / alone: the race against its members trained alone one after another (1 = no cost of\n"
          "racing); race / no linear: against the same race without its linear members (their cost).\n"
          "Ratios are medians of the rounds' ratios.\n")


def seconds(learn: Callable[[np.ndarray, np.ndarray], object], X: np.ndarray, y: np.ndarray) -> float:
    start = time.perf_counter()
    learn(X, y)
    return time.perf_counter() - start


def accuracy(synthetic: int) -> None:
    models = [("MLP", lambda d, k: MLP([d, 32, outputs_of(k)], seed=0)),
              ("MLP scaled", lambda d, k: MLP([d, 32, outputs_of(k)], seed=0, scale="standard")),
              ("Race", lambda d, k: Race.grid(d, outputs_of(k), seed=0))]
    rivers = [("River LR", "lr"), ("River scaled LR", "scaled_lr"), ("River HT", "tree")]
    has_river = available("river")
    names = [m for m, _ in models] + ["best member"] + ([r for r, _ in rivers] if has_river else [])
    if not has_river:
        print("(River is not installed: its models and streams are skipped; pip install river)")
    header = f"{'stream':<16} {'n':>6} {'d':>3} {'k':>3} " + " ".join(f"{n:>15}" for n in names)
    acc_rows, time_rows, ratios = [], [], []
    for name, package, load in streams(synthetic):
        if not available(package):
            print(f"(skipped {name}: needs {package})")
            continue
        X, y = load()
        d, k = X.shape[1], int(y.max()) + 1
        runs = RUNS_SHORT if len(X) < 10_000 else 1  # a few ms are noisy: median of several
        accs, secs = [], []
        for _, make in models:
            a, s = median_run(lambda: ours(make(d, k), X, y, k), runs)
            accs.append(a)
            secs.append(s)
        race = Race.grid(d, outputs_of(k), seed=0)
        ours(race, X, y, k)
        accs.append(max(m.correct_total / m.samples for m in race.members))  # in hindsight
        secs.append(float("nan"))
        if has_river:
            for _, kind in rivers:
                a, s = median_run(lambda: river(kind, X, y, k), runs)
                accs.append(a)
                secs.append(s)
            ratios.append((name, accs[2], max(accs[-3:]), secs[2], secs[-3:][int(np.argmax(accs[-3:]))]))
        info = f"{name:<16} {len(X):>6} {d:>3} {k:>3} "
        acc_rows.append(info + " ".join(f"{a:>15.4f}" for a in accs))
        time_rows.append(info + " ".join(f"{s:>15.4f}" if s == s else f"{'':>15}" for s in secs))
        print(acc_rows[-1], file=sys.stderr, flush=True)  # progress
    print("\nPrequential accuracy (each sample predicted before it is learned):")
    print(header, *acc_rows, sep="\n")
    print("\nWall time, seconds (learning and predicting the whole stream; compilation excluded):")
    print(header, *time_rows, sep="\n")
    if ratios:
        print("\nRace against the best River model of each stream:")
        print(f"{'stream':<16} {'race acc':>9} {'best River':>11} {'difference':>11} {'race s':>8} "
              f"{'River s':>8} {'faster':>7}")
        for name, race_acc, river_acc, race_s, river_s in ratios:
            print(f"{name:<16} {race_acc:>9.4f} {river_acc:>11.4f} {race_acc - river_acc:>+11.4f} "
                  f"{race_s:>8.4f} {river_s:>8.3f} {river_s / race_s:>6.1f}x")
        wins = sum(r[1] >= r[2] for r in ratios)
        tenfold = sum(r[4] >= 10 * r[3] for r in ratios)
        print(f"The race matches or beats the best River model on {wins} of {len(ratios)} streams, "
              f"and takes at least 10x less wall time on {tenfold}.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller streams, shorter timings")
    parser.add_argument("--part", choices=("speed", "accuracy", "both"), default="both")
    parser.add_argument("--repeats", type=int, default=5, help="timings per speed figure (default 5)")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats {args.repeats}; expected at least 1")
    if args.part in ("speed", "both"):
        speed(0.05 if args.quick else SECONDS, min(args.repeats, 3) if args.quick else args.repeats)
    if args.part in ("accuracy", "both"):
        accuracy(SYNTHETIC // 4 if args.quick else SYNTHETIC)


if __name__ == "__main__":
    main()
