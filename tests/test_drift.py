"""The drift detector against River's Page-Hinkley, on abrupt drift and on stationary streams."""

import numpy as np
import pytest

from streammlp import MLP
from streammlp.drift import DriftDetector, PageHinkley

drift = pytest.importorskip("river.drift")


def river_detections(x, settings: PageHinkley) -> list[int]:
    """The rows where River's PageHinkley (mode "up", the same settings) detects a drift."""
    ph = drift.PageHinkley(min_instances=settings.min_instances, delta=settings.delta,
                           threshold=settings.threshold, alpha=settings.alpha, mode="up")
    found = []
    for i, value in enumerate(x):
        ph.update(float(value))
        if ph.drift_detected:
            found.append(i)
    return found


def error_stream(rates, length: int, seed: int) -> np.ndarray:
    """0/1 errors, ``length`` rows at each error rate of ``rates`` in turn."""
    return (np.random.default_rng(seed).random(length * len(rates))
            < np.repeat(rates, length)).astype(float)


STREAMS = {
    "abrupt": lambda: error_stream([0.1, 0.5, 0.2, 0.7], 3000, seed=1),
    "gradual": lambda: error_stream(np.linspace(0.05, 0.6, 12), 1000, seed=2),
    # River's own example: values 0-1, then 4-7.
    "river's example": lambda: np.concatenate([np.random.default_rng(3).integers(0, 2, 1000),
                                               np.random.default_rng(4).integers(4, 8, 1000)]),
}
SETTINGS = {
    "ours": PageHinkley(),
    "river's defaults": PageHinkley(delta=0.005, threshold=50, alpha=1 - 0.0001),  # fades, fires often
    "eager": PageHinkley(delta=0.0, threshold=5, min_instances=1),
}


@pytest.mark.parametrize("settings", SETTINGS.values(), ids=SETTINGS)
@pytest.mark.parametrize("stream", STREAMS.values(), ids=STREAMS)
def test_same_detections_as_river(stream, settings):
    x = stream()
    expected = river_detections(x, settings)
    assert expected, "a comparison with no detection would prove little"
    assert DriftDetector(settings).update_errors(x).rows.tolist() == expected
    # Batch boundaries change nothing: the state carries over between calls.
    detector, found = DriftDetector(settings), []
    for start in range(0, len(x), 777):
        found += (start + detector.update_errors(x[start:start + 777]).rows).tolist()
    assert found == expected


def test_models_are_independent():
    """Interleaved rows of three models find each model's drifts as if it ran alone."""
    streams = [error_stream(rates, 2000, seed) for seed, rates in
               enumerate(([0.1, 0.6], [0.3, 0.3], [0.05, 0.5, 0.05, 0.9]))]
    slots = np.random.default_rng(5).permutation(np.repeat(np.arange(3), [len(s) for s in streams]))
    x = np.empty(len(slots))
    for s, stream in enumerate(streams):
        x[slots == s] = stream
    detector = DriftDetector(models=3)
    drifts = detector.update_errors(x, slots)
    for s, stream in enumerate(streams):
        rows = drifts.rows[drifts.slots == s]
        assert np.flatnonzero(slots == s)[river_detections(stream, PageHinkley())].tolist() == rows.tolist()
        # seen: the model's own row count at the detection
        assert (drifts.seen[drifts.slots == s] - 1).tolist() == river_detections(stream, PageHinkley())
    assert len(drifts) >= 3


def test_prequential_record_is_the_error_stream():
    rng = np.random.default_rng(6)
    actual = rng.integers(0, 4, 9000)
    predicted = np.where(rng.random(9000) < np.repeat([0.9, 0.4, 0.9], 3000), actual, (actual + 1) % 4)
    found = DriftDetector().update(predicted, actual)
    assert found.rows.tolist() == river_detections(predicted != actual, PageHinkley())
    assert found.rows.tolist() and found.rows[0] >= 3000


def test_abrupt_concept_change_detected_within_bound():
    """A network learns x0 >= 0; at row 6,000 the labels flip. Its prequential errors go from
    a few % to nearly all; Page-Hinkley must notice within threshold / (jump - delta) rows
    (about 100 here; allowed 300) and never before the change."""
    rng = np.random.default_rng(7)
    X = rng.uniform(-1, 1, (12_000, 3))
    y = (X[:, 0] >= 0).astype(int)
    y[6000:] = 1 - y[6000:]
    net = MLP([3, 8, 1], lr=0.5, seed=0)
    detector = DriftDetector()
    found = []
    for start in range(0, len(X), 500):  # as a service would, batch by batch
        result = net.learn(X[start:start + 500], y[start:start + 500])
        found += (start + detector.update(result.predicted, result.actual).rows).tolist()
    assert found and 6000 <= found[0] < 6000 + 300, found
    assert all(f >= 6000 for f in found)


@pytest.mark.parametrize("rate", [0.05, 0.2, 0.5])
def test_no_false_alarm_on_a_stationary_stream(rate):
    """200,000 rows at a constant error rate raise no drift (0.5: the noisiest 0/1 stream).
    Measured (bench/drift.py): none in 600 such streams at rates 0.02-0.5."""
    for seed in range(3):
        x = error_stream([rate], 200_000, seed=100 + seed)
        assert len(DriftDetector().update_errors(x)) == 0


def test_state_round_trip_continues_exactly():
    x = error_stream([0.1, 0.6, 0.1, 0.6], 2000, seed=8)
    whole = DriftDetector().update_errors(x).rows
    first = DriftDetector()
    head = first.update_errors(x[:3000]).rows
    second = DriftDetector.from_state(first.state_dict())
    tail = 3000 + second.update_errors(x[3000:]).rows
    assert np.concatenate([head, tail]).tolist() == whole.tolist() and len(whole) >= 2


@pytest.mark.parametrize("bad, message", [
    (dict(delta=-1), "delta=-1"), (dict(threshold=0), "threshold=0"),
    (dict(alpha=1.5), "alpha=1.5"), (dict(min_instances=0.5), "min_instances=0.5")])
def test_bad_settings(bad, message):
    with pytest.raises(ValueError, match=message):
        PageHinkley(**bad)


def test_bad_slots():
    detector = DriftDetector(models=2)
    with pytest.raises(ValueError, match="pass slots"):
        detector.update_errors([0.0, 1.0])
    with pytest.raises(ValueError, match="models 0 to 1"):
        detector.update_errors([0.0, 1.0], slots=[0, 2])
    with pytest.raises(ValueError, match=r"one per row, \(2,\)"):
        detector.update([0, 1], [0, 1], slots=[0])
