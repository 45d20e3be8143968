"""The quality suite: the default race against River's default models on a broad set of streams.

Every model learns every stream one sample at a time, prequentially (each
sample predicted before it is learned), starting afresh, with defaults and no
per-stream tuning, side by side in one run:

- **ours**: ``Race.grid(inputs, outputs, seed=0)`` (for regression
  ``output="identity", loss="sse"``, which takes the grid's regression
  defaults), one ``learn`` call over the whole stream
  (one exact step per row, in order) after a warm-up call on a copy, so
  compilation is not timed; also timed without its linear members
  (``linear=()``), alternately, ``PAIRS`` times: their cost, as a median of
  ratios;
- **River** (``predict_one`` then ``learn_one`` on dicts built beforehand):
  classification ``StandardScaler | LogisticRegression`` (one-vs-rest for
  several classes; River's documented pipe), ``GaussianNB``,
  ``HoeffdingTreeClassifier``, ``HoeffdingAdaptiveTreeClassifier``;
  regression ``StandardScaler | LinearRegression``, ``HoeffdingTreeRegressor``,
  ``HoeffdingAdaptiveTreeRegressor``; all with defaults but the adaptive trees'
  ``seed`` (42: their bootstrap is random, and unseeded they differ run to run).

Streams. Real, in stored order: River's Phishing, Bananas, ImageSegments;
scikit-learn's digits; River's TrumpApproval and ChickWeights (regression).
``streammlp.signals`` waveforms, bands and points (seed 0; the concept changes
at the middle). River's synthetic generators, the first ``--samples`` (50,000)
samples, drift at the middle: STAGGER (functions 0 -> 2), Sine (0 -> 2), Mixed
(0 -> 1), RandomTree (tree seed 1 -> 2), each abrupt (the second concept's
samples straight after the first's) and gradual (``ConceptDriftStream``, width
10,000); the second concept's generator uses seed 43; Waveform (no drift
variant: the generator has none); regression Friedman (stationary) and
FriedmanDrift ``gra`` (abrupt, global: at the middle and at 3/4) and ``gsg``
(gradual, global: transition window 10,000; --quick: 1,250). Every generator and drift stream
uses seed 42.

Reported per stream: prequential accuracy (classification) or MAE
(regression) of every model, ours against River's best, **recovery** after an
abrupt drift at a known row P (rows from P until the rolling accuracy over the
last 500 rows, all after P, regains 95 % of its level over the 500 rows before
P; at least 500; "never" if not within the stream), and microseconds per
sample (learning and predicting; ours / River's best as a speed-up: on a stream
shorter than ``SHORT`` rows every model runs ``ROUNDS`` times, ours first in
each round, and the speed-up is the median of the rounds' ratios). The race's
drift detector (``Race(drift=...)``, on by default in classification) reports
how many drifts, and the first after P. ``--reseed 2,4`` also runs, on each
classification stream, the race re-seeding its weakest k members on each drift
(``Race(reseed=k)``): score, recovery, drifts and time, beside the default.

    pip install -e '.[bench]'
    python bench/quality.py            # everything: many minutes (River is slow)
    python bench/quality.py --quick    # 10,000 samples per synthetic stream
    python bench/quality.py --only Sine,STAGGER
    python bench/quality.py --reseed 2,4,8   # and races re-seeding k members on a drift

Timings are printed, never asserted: the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from race import signal_stream, sklearn_stream  # bench/race.py: the loaders it already has
from streammlp import Race, RaceResult, signals
from streammlp.race import RESEED

SAMPLES = 50_000  # first samples of each synthetic stream; --quick uses 10,000
SEED = 42  # every River generator and drift stream
GRADUAL = 10_000  # width of a gradual drift (ConceptDriftStream) or transition (FriedmanDrift)
WINDOW = 500  # rolling window of the recovery measure
REGAIN = 0.95  # recovery: the share of the pre-drift accuracy to regain
SHORT = 10_000  # streams shorter than this are timed in ROUNDS rounds: a few ms is noise
ROUNDS = 5
PAIRS = 5  # timings of the race with and without its linear members, alternated


@dataclass
class Stream:
    name: str
    X: np.ndarray
    y: np.ndarray  # labels 0..k-1, or targets (regression)
    regression: bool = False
    drift_at: int | None = None  # the row of an abrupt drift (recovery is measured there)
    classes: int = field(init=False)

    def __post_init__(self) -> None:
        self.classes = 0 if self.regression else int(self.y.max()) + 1


# -- streams -----------------------------------------------------------------------------------

def from_river(rows, n: int | None = None, regression: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` rows of a River dataset or generator as arrays; classes numbered in
    sorted order, features in the first row's order."""
    rows = list(itertools.islice(rows, n))
    keys = list(rows[0][0])
    X = np.array([[float(x[k]) for k in keys] for x, _ in rows])
    if regression:
        return X, np.array([float(y) for _, y in rows])
    names = sorted({y for _, y in rows}, key=str)
    return X, np.array([names.index(y) for _, y in rows], dtype=np.int64)


def streams(n: int) -> list[tuple[str, Callable[[], Stream]]]:
    """(name, loader) of every stream of the suite; synthetic ones have ``n`` samples."""
    from river import datasets
    from river.datasets import synth

    def drifting(before, after, gradual: bool):
        """The concept ``before`` then ``after``: at once at the middle (abrupt; River's
        ConceptDriftStream overflows at width 1), or over GRADUAL rows around it."""
        if gradual:
            return synth.ConceptDriftStream(before, after, position=n // 2, width=GRADUAL, seed=SEED)
        return itertools.chain(itertools.islice(before, n // 2), after)

    def signal(make):
        return lambda: Stream(make.__name__, *signal_stream(make, n), drift_at=n // 2)

    found = [
        ("Phishing", lambda: Stream("Phishing", *from_river(datasets.Phishing()))),
        ("Bananas", lambda: Stream("Bananas", *from_river(datasets.Bananas()))),
        ("ImageSegments", lambda: Stream("ImageSegments", *from_river(datasets.ImageSegments()))),
        ("digits", lambda: Stream("digits", *sklearn_stream("digits"))),
        ("waveforms", signal(signals.waveforms)),
        ("bands", signal(signals.bands)),
        ("points", signal(signals.points)),
    ]
    concepts = {  # (concept, seed) -> generator
        "STAGGER": lambda f, seed: synth.STAGGER(classification_function=f, seed=seed),
        "Sine": lambda f, seed: synth.Sine(classification_function=f, seed=seed),
        "Mixed": lambda f, seed: synth.Mixed(classification_function=f, seed=seed),
        "RandomTree": lambda f, seed: synth.RandomTree(seed_tree=f, seed_sample=seed),
    }
    changes = {"STAGGER": (0, 2), "Sine": (0, 2), "Mixed": (0, 1), "RandomTree": (1, 2)}
    for name, make in concepts.items():
        a, b = changes[name]
        for gradual in (False, True):
            label = f"{name} {'gradual' if gradual else 'abrupt'}"
            # The concept after the drift draws its inputs with seed SEED + 1, so no input
            # row repeats one from before the drift.
            found.append((label, lambda label=label, make=make, a=a, b=b, gradual=gradual: Stream(
                label, *from_river(drifting(make(a, SEED), make(b, SEED + 1), gradual), n),
                drift_at=None if gradual else n // 2)))
    found += [
        ("Waveform", lambda: Stream("Waveform", *from_river(synth.Waveform(seed=SEED), n))),
        ("TrumpApproval", lambda: Stream("TrumpApproval", *from_river(datasets.TrumpApproval(),
                                                                      regression=True), True)),
        ("ChickWeights", lambda: Stream("ChickWeights", *from_river(datasets.ChickWeights(),
                                                                    regression=True), True)),
        ("Friedman", lambda: Stream("Friedman", *from_river(synth.Friedman(seed=SEED), n, True), True)),
        ("FriedmanDrift abrupt", lambda: Stream("FriedmanDrift abrupt", *from_river(
            synth.FriedmanDrift("gra", position=(n // 2, 3 * n // 4), seed=SEED), n, True), True)),
        ("FriedmanDrift gradual", lambda: Stream("FriedmanDrift gradual", *from_river(
            synth.FriedmanDrift("gsg", position=(n // 2, 3 * n // 4), seed=SEED,
                                transition_window=min(GRADUAL, n // 8)), n, True), True)),
    ]
    return found


# -- models: each gives per-row scores (correct 0/1, or absolute error) and seconds ------------

def ours(stream: Stream, linear=None, reseed=RESEED, at_change: bool = False
         ) -> tuple[np.ndarray, float, RaceResult]:
    """Per-row scores, seconds, and the race's result (its drifts; None in regression).
    ``linear``: the linear members' learning rates (None: the grid's default).
    ``at_change``: the race also re-seeds at the known abrupt drift's row, as if a detector
    had found it there at once (the most re-seeding could buy)."""
    d = stream.X.shape[1]
    grid = dict(linear=linear, reseed=reseed, seed=0)
    if stream.regression:
        race = Race.grid(d, 1, output="identity", loss="sse", **grid)
        targets = stream.y
    elif stream.classes == 2:
        race, targets = Race.grid(d, 1, **grid), stream.y.astype(float)
    else:
        race, targets = Race.grid(d, stream.classes, **grid), stream.y
    copy.deepcopy(race).learn(stream.X[:1], targets[:1])  # compiled, not timed
    start = time.perf_counter()
    if at_change:
        at = stream.drift_at
        before = race.learn(stream.X[:at], targets[:at])
        race._reseed(at)
        result = RaceResult.joined([before, race.learn(stream.X[at:], targets[at:])])
    else:
        result = race.learn(stream.X, targets)
    seconds = time.perf_counter() - start
    if stream.regression:  # sample_loss is FE²/2 of the one output
        return np.sqrt(2 * result.sample_loss), seconds, None
    correct = (result.predicted == result.actual).astype(float)
    return correct, seconds, result


def river_models(stream: Stream) -> dict[str, Callable[[], object]]:
    from river import linear_model, multiclass, naive_bayes, preprocessing, tree
    if stream.regression:
        return {"LinReg": lambda: preprocessing.StandardScaler() | linear_model.LinearRegression(),
                "HT": tree.HoeffdingTreeRegressor,
                "HAT": lambda: tree.HoeffdingAdaptiveTreeRegressor(seed=SEED)}

    def logistic():
        lr = linear_model.LogisticRegression()
        if stream.classes > 2:
            lr = multiclass.OneVsRestClassifier(lr)
        return preprocessing.StandardScaler() | lr
    return {"LogReg": logistic, "GNB": naive_bayes.GaussianNB, "HT": tree.HoeffdingTreeClassifier,
            "HAT": lambda: tree.HoeffdingAdaptiveTreeClassifier(seed=SEED)}


def river(make: Callable[[], object], stream: Stream) -> tuple[np.ndarray, float]:
    model = make()
    rows = [dict(enumerate(x)) for x in stream.X.tolist()]
    labels = stream.y.tolist()
    scores = np.empty(len(rows))
    start = time.perf_counter()
    if stream.regression:
        for i, (x, target) in enumerate(zip(rows, labels)):
            scores[i] = abs(model.predict_one(x) - target)
            model.learn_one(x, target)
    else:
        for i, (x, label) in enumerate(zip(rows, labels)):
            scores[i] = model.predict_one(x) == label
            model.learn_one(x, label)
    return scores, time.perf_counter() - start


def recovery(correct: np.ndarray, at: int) -> int | None:
    """Rows from ``at`` until the rolling accuracy over the last WINDOW rows, all after ``at``,
    regains REGAIN of its level over the WINDOW rows before ``at`` (None: never)."""
    before = correct[at - WINDOW:at].mean()
    rolling = np.convolve(correct[at:], np.ones(WINDOW) / WINDOW, mode="valid")  # [at+W-1 ...]
    regained = np.flatnonzero(rolling >= REGAIN * before)
    return int(regained[0]) + WINDOW if len(regained) else None


# -- the run ---------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="10,000 samples per synthetic stream")
    parser.add_argument("--samples", type=int, default=None,
                        help=f"samples per synthetic stream (default {SAMPLES:,})")
    parser.add_argument("--only", default="",
                        help="comma-separated stream names, or substrings of them")
    parser.add_argument("--reseed", default="",
                        help="comma-separated counts of members to re-seed on a drift: each a "
                             f"race scored beside the default (reseed={RESEED})")
    args = parser.parse_args()
    variants = [int(k) for k in args.reseed.split(",") if k.strip()]
    n = args.samples or (10_000 if args.quick else SAMPLES)
    if n < 4 * WINDOW:
        parser.error(f"--samples {n}; expected at least {4 * WINDOW}")
    wanted = [w.strip().lower() for w in args.only.split(",") if w.strip()]
    every = streams(n)
    names = {name.lower() for name, _ in every}
    # A stream's whole name picks that stream alone (Waveform, not waveforms); else substrings.
    chosen = [(name, load) for name, load in every
              if not wanted or any(w == name.lower() if w in names else w in name.lower()
                                   for w in wanted)]
    if not chosen:
        parser.error(f"--only {args.only!r} matches no stream")
    print(f"{len(chosen)} streams, synthetic ones {n:,} samples; seeds: generators {SEED}, race 0",
          flush=True)
    rows = []
    for name, load in chosen:
        stream = load()
        # Every model from scratch, ours first, in each round: scores (the same every
        # round: all is seeded) and seconds per round.
        scores, seconds = {}, {}
        for _ in range(ROUNDS if len(stream.X) < SHORT else 1):
            scores["ours"], secs, record = ours(stream)
            seconds.setdefault("ours", []).append(secs)
            for peer, make in river_models(stream).items():
                scores[peer], secs = river(make, stream)
                seconds.setdefault(peer, []).append(secs)
        means = {m: float(s.mean()) for m, s in scores.items()}
        peers = [m for m in scores if m != "ours"]
        # Best River: highest accuracy, or lowest MAE.
        best = (min if stream.regression else max)(peers, key=means.get)
        better = (means["ours"] <= means[best]) if stream.regression else (means["ours"] >= means[best])
        speed = statistics.median(b / o for b, o in zip(seconds[best], seconds["ours"]))
        # What the linear members cost: the race with them over the race without, alternated.
        linear = statistics.median(ours(stream)[1] / ours(stream, linear=())[1] for _ in range(PAIRS))
        line = {"stream": name, "n": len(stream.X), "metric": "MAE" if stream.regression else "acc",
                "means": means, "best": best, "win": better, "speed": speed, "linear": linear,
                "us": {m: statistics.median(s) / len(stream.X) * 1e6 for m, s in seconds.items()}}
        if stream.drift_at is not None:
            line["recovery"] = {m: recovery(scores[m], stream.drift_at) for m in ("ours", best)}
        if record is not None:
            line["drifts"] = detected(record, stream)
        # The race re-seeding k members on a drift, beside the default: scores (a classifier
        # race's; a regression race is not watched, so it is the default's), recovery, time.
        for k in [] if stream.regression else variants:
            score, secs, result = ours(stream, reseed=k)
            variant = {"mean": float(score.mean()), "drifts": detected(result, stream),
                       "us": secs / len(stream.X) * 1e6,
                       "win": bool(score.mean() >= means[best])}
            if stream.drift_at is not None:
                variant["recovery"] = recovery(score, stream.drift_at)
                score = ours(stream, reseed=k, at_change=True)[0]
                variant["at_change"] = (float(score.mean()), recovery(score, stream.drift_at))
            line.setdefault("reseed", {})[k] = variant
        rows.append(line)
        print(describe(line), file=sys.stderr, flush=True)  # progress
    report(rows, peers_of=lambda r: [m for m in r["means"] if m != "ours"])


def detected(result: RaceResult, stream: Stream) -> tuple[int, int | None]:
    """How many drifts the race detected, and the rows from the known abrupt drift to the
    first detected after it (None: none, or no known drift)."""
    drifts = result.drifts.rows
    after = drifts[drifts >= stream.drift_at] if stream.drift_at is not None else drifts[:0]
    return len(drifts), int(after[0] - stream.drift_at) if len(after) else None


def describe(r: dict) -> str:
    """One stream's figures on one line (the progress; a cut-short run keeps them)."""
    figures = " ".join(f"{m} {v:.4f}" for m, v in r["means"].items())
    us = " ".join(f"{m} {v:.1f}" for m, v in r["us"].items())
    extra = "".join(f"; {k} {r[k]}" for k in ("recovery", "drifts", "reseed") if k in r)
    return (f"{r['stream']}: {r['metric']} {figures}; best River {r['best']}, "
            f"{'win' if r['win'] else 'LOSS'}; us/sample {us}; speed-up {r['speed']:.1f}x; "
            f"linear members cost x{r['linear']:.2f}{extra}")


def _rec(v) -> str:
    return "never" if v is None else f"{v:,}"


def report(rows: list[dict], peers_of) -> None:
    print("\nPrequential accuracy (classification, higher is better) and MAE (regression, lower):")
    names = ["ours", "LogReg", "GNB", "HT", "HAT", "LinReg"]
    print(f"{'stream':<22} {'n':>6} {'':>4} " + " ".join(f"{m:>8}" for m in names)
          + f" {'best River':>10} {'ours-best':>10} {'win':>4}")
    for r in rows:
        cells = " ".join(f"{r['means'][m]:>8.4f}" if m in r["means"] else f"{'':>8}" for m in names)
        diff = r["means"]["ours"] - r["means"][r["best"]]
        print(f"{r['stream']:<22} {r['n']:>6} {r['metric']:>4} {cells} {r['best']:>10} "
              f"{diff:>+10.4f} {'yes' if r['win'] else 'NO':>4}")
    wins = sum(r["win"] for r in rows)
    print(f"Ours matches or beats River's best default model on {wins} of {len(rows)} streams "
          f"({wins / len(rows):.0%}).")
    drifting = [r for r in rows if "recovery" in r]
    if drifting:
        print(f"\nRecovery after the abrupt drift (rows until the rolling accuracy over {WINDOW} rows "
              f"regains {REGAIN:.0%} of its pre-drift level), and our detector on the race's errors:")
        print(f"{'stream':<22} {'ours':>8} {'River best':>11} {'(model)':>7} {'ours <=':>8} "
              f"{'drifts':>7} {'detected after':>15}")
        for r in drifting:
            mine, theirs = r["recovery"]["ours"], r["recovery"][r["best"]]
            ok = mine is not None and (theirs is None or mine <= theirs)
            count, delay = r.get("drifts", (0, None))
            print(f"{r['stream']:<22} {_rec(mine):>8} {_rec(theirs):>11} {r['best']:>7} "
                  f"{'yes' if ok else 'NO':>8} {count:>7} {_rec(delay):>15}")
    print("\nMicroseconds per sample (learn and predict), ours against River's best model, and ours"
          "\nwith its linear members against ours without them (median of ratios):")
    print(f"{'stream':<22} " + " ".join(f"{m:>8}" for m in names) + f" {'speed-up':>9} "
          f"{'linear cost':>12}")
    for r in rows:
        cells = " ".join(f"{r['us'][m]:>8.2f}" if m in r["us"] else f"{'':>8}" for m in names)
        print(f"{r['stream']:<22} {cells} {r['speed']:>8.1f}x {r['linear']:>11.2f}x")
    tenfold = sum(r["speed"] >= 10 for r in rows)
    print(f"Ours is at least 10x faster per sample than River's best model on {tenfold} of {len(rows)} "
          "streams.")
    reseeding = [r for r in rows if "reseed" in r]
    if reseeding:
        ks = list(reseeding[0]["reseed"])
        print(f"\nRe-seeding the weakest k members on each drift (k = {ks}), against the default "
              f"(reseed={RESEED}): score, win against River's best, recovery after the abrupt "
              "drift, drifts detected, us/sample:")
        wins = {k: sum(r["reseed"][k]["win"] for r in reseeding) for k in ks}
        for r in reseeding:
            cells = "  ".join(
                f"k={k}: {v['mean']:.4f} {'win' if v['win'] else 'LOSS'} "
                f"{_rec(v['recovery']) if 'recovery' in v else '-':>6} {v['drifts'][0]} "
                f"{v['us']:.1f}us" for k, v in r["reseed"].items())
            rec = f"{_rec(r['recovery']['ours']):>6}" if "recovery" in r else f"{'-':>6}"
            print(f"{r['stream']:<22} default {r['means']['ours']:.4f} {rec} {r['drifts'][0]}  "
                  f"{cells}")
        print("The same, re-seeding also at the known abrupt drift's row (as if detected at "
              "once): score, recovery")
        for r in [r for r in reseeding if "recovery" in r]:
            print(f"{r['stream']:<22} default {r['means']['ours']:.4f} "
                  f"{_rec(r['recovery']['ours']):>6}  " + "  ".join(
                      f"k={k}: {v['at_change'][0]:.4f} {_rec(v['at_change'][1]):>6}"
                      for k, v in r["reseed"].items()))
        print("Classification streams won, of " + f"{len(reseeding)}: default "
              f"{sum(r['win'] for r in reseeding)}, "
              + ", ".join(f"k={k} {w}" for k, w in wins.items()))
    others = [r for r in rows if "drifts" in r and "recovery" not in r]
    if others:
        print("\nDrifts our detector reported on the race's errors, streams without a known abrupt drift: "
              + ", ".join(f"{r['stream']} {r['drifts'][0]}" for r in others))


if __name__ == "__main__":
    main()
