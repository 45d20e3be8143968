"""Drift events from a real service: one model, and a keyed service's models each on their own."""

import time

import numpy as np
import pytest

from streammlp import MLP, DriftDetector, Race, model_seed
from streammlp.client import Control, Producer, Subscriber
from conftest import changing_stream, running_service

ARGS = ("--layers", "3,8,1", "--lr", "0.5", "--seed", "0", "--publish-every-ms", "20")
RECV_TIMEOUT = 10.0
CHANGE = 6000  # the row where the concept flips
BATCH = 500


def flipping_stream(seed: int, n: int = 2 * CHANGE, flip: bool = True):
    """3-D points, class 1 when x0 >= 0; from row CHANGE on, the opposite (if ``flip``)."""
    X = np.random.default_rng(seed).uniform(-1, 1, (n, 3))
    y = (X[:, 0] >= 0).astype(float)
    if flip:
        y[CHANGE:] = 1 - y[CHANGE:]
    return X, y


def expected_drifts(net: MLP, X, y) -> list[int]:
    """The versions at which the detector, run in-process batch by batch over the same
    network's prequential record, finds drifts: what the service must report."""
    detector, found = DriftDetector(), []
    for start in range(0, len(X), BATCH):
        result = net.learn(X[start:start + BATCH], y[start:start + BATCH])
        found += (start + 1 + detector.update(result.predicted, result.actual).rows).tolist()
    return found


def wait_for(control, version: int) -> None:
    """Until the service has trained ``version`` samples (over all its models)."""
    deadline = time.monotonic() + RECV_TIMEOUT
    while control.ping() < version:
        if time.monotonic() > deadline:
            raise TimeoutError(f"service stuck before version {version}")
        time.sleep(0.01)


def drift_events(events, count: int) -> list[dict]:
    """The next ``count`` drift events (other events skipped), then none within 0.3 s."""
    found = []
    while len(found) < count:
        topic, body = events.recv()
        if body["kind"] == "drift":
            found.append(body)
    with pytest.raises(TimeoutError):
        while True:
            if events.recv(timeout=0.3)[1]["kind"] == "drift":
                break
    return found


def test_one_model_reports_the_drift_where_it_happened():
    X, y = flipping_stream(1)
    expected = expected_drifts(MLP([3, 8, 1], lr=0.5, seed=0), X, y)
    assert expected and CHANGE < expected[0] <= CHANGE + 300 and min(expected) > CHANGE
    with running_service(*ARGS) as s, Control(s.control, timeout=RECV_TIMEOUT) as control, \
            Subscriber(s.publish, topics=("events",), timeout=RECV_TIMEOUT) as events:
        time.sleep(0.2)  # the subscription reaches the publisher
        with Producer(s.ingest) as producer:
            for start in range(0, len(X), BATCH):
                producer.send(X[start:start + BATCH], y[start:start + BATCH])
                wait_for(control, start + BATCH)  # batch by batch, as in expected_drifts
        found = drift_events(events, len(expected))
        assert [e["version"] for e in found] == expected
        assert all("model" not in e and e["detector"] == "page_hinkley" for e in found)
        stats = control.stats()
        assert stats["drifts"] == len(expected) and stats["drift_versions"] == expected


def test_keyed_models_drift_on_their_own():
    """Two sensors interleaved: only 'flips' changes concept; its event names it, at its own
    version, and 'steady' raises none."""
    Xf, yf = flipping_stream(2)
    Xs, ys = flipping_stream(3, flip=False)
    expected = expected_drifts(MLP([3, 8, 1], lr=0.5, seed=model_seed(0, "flips")), Xf, yf)
    assert expected_drifts(MLP([3, 8, 1], lr=0.5, seed=model_seed(0, "steady")), Xs, ys) == []
    with running_service(*ARGS, "--keyed") as s, Control(s.control, timeout=RECV_TIMEOUT) as control, \
            Subscriber(s.publish, topics=("events",), timeout=RECV_TIMEOUT) as events:
        time.sleep(0.2)
        with Producer(s.ingest) as producer:
            for start in range(0, len(Xf), BATCH):
                rows = slice(start, start + BATCH)
                producer.send(Xs[rows], ys[rows], model="steady")
                producer.send(Xf[rows], yf[rows], model="flips")
                wait_for(control, 2 * (start + BATCH))
        found = drift_events(events, len(expected))
        assert [(e["model"], e["version"]) for e in found] == [("flips", v) for v in expected]
        assert control.stats()["drifts"] == len(expected)



def test_a_served_race_reports_its_own_drifts_and_reaction():
    """A race watches itself (one test, its own): the service's events, metrics and the race's
    summary give the drifts, and any members re-seeded, of the same race trained in process."""
    X, y = changing_stream()
    race = Race.grid(3, 1, seed=0)  # what --race --layers 3,1 --seed 0 serves
    race.learn(X, y)
    expected = race.summary()
    assert expected["drifts"] >= 1
    with running_service("--layers", "3,1", "--race", "--seed", "0", "--publish-every-ms", "20") \
            as s, Control(s.control, timeout=RECV_TIMEOUT) as control, \
            Subscriber(s.publish, topics=("events",), timeout=RECV_TIMEOUT) as events:
        time.sleep(0.2)
        with Producer(s.ingest) as producer:
            for start in range(0, len(X), 2000):
                producer.send(X[start:start + 2000], y[start:start + 2000])
        wait_for(control, len(X))
        found = drift_events(events, expected["drifts"])
        stats = control.stats()
    assert [e["version"] for e in found] == expected["drift_versions"] == stats["drift_versions"]
    assert [e.get("reseeded", []) for e in found] == expected["reseeded"]
    assert stats["drifts"] == expected["drifts"]
    assert {k: stats["race"][k] for k in ("drifts", "drift_versions", "reseeded")} == \
        {k: expected[k] for k in ("drifts", "drift_versions", "reseeded")}


def test_rows_undone_by_divergence_are_not_watched():
    """A keyed service's batch in which one model went non-finite keeps the other models'
    rows (FleetResult holds only those); the detector must pair each kept row with its own
    model, so 'flips' drifts where it would alone and the undone rows count nowhere."""
    from service.models import _Drift
    from streammlp.fleet import FleetResult

    rng = np.random.default_rng(9)
    wrong = {"flips": rng.random(8000) < np.repeat([0.05, 0.7], 4000),
             "steady": rng.random(8000) < 0.2}
    expected = DriftDetector().update_errors(wrong["flips"]).seen.tolist()
    sent = []
    drift = _Drift(MLP([3, 8, 1]), lambda topic, body: sent.append(body), [0, 0], keyed=True)
    keys, at = ["flips", "steady", "bad"], {"flips": 0, "steady": 0}
    for start in range(0, 8000, 1000):
        slots = rng.permutation(np.repeat([0, 1, 2], [1000, 1000, 300]))
        undone = slots == 2  # model 'bad' diverged: its rows are dropped from the figures
        kept = slots[~undone]
        predicted = np.empty(len(kept), dtype=np.int64)
        for s, key in enumerate(keys[:2]):
            predicted[kept == s] = wrong[key][at[key]:at[key] + 1000]
            at[key] += 1000
        drift.observe(FleetResult(n=len(kept), sse=0.0, loss=0.0, correct=0,
                                  sample_loss=np.zeros(len(kept)), predicted=predicted,
                                  actual=np.zeros(len(kept), dtype=np.int64), undone=undone),
                      slots, keys, undone)
    assert expected and [(e["model"], e["version"]) for e in sent] == [("flips", v) for v in expected]
    assert drift.figures() == {"drifts": len(expected)}


def test_a_resumed_service_detects_as_if_never_stopped(tmp_path):
    """Stopped before the change and resumed from its checkpoint, a keyed service reports the
    drift where an uninterrupted run does: the detector's statistics are checkpointed (a fresh
    detector, started after the flip, sees a steady error rate and stays silent)."""
    Xf, yf = flipping_stream(2)
    expected = expected_drifts(MLP([3, 8, 1], lr=0.5, seed=model_seed(0, "flips")), Xf, yf)
    assert expected and min(expected) > CHANGE
    ckpt = ("--keyed", "--checkpoint", str(tmp_path / "m.npz"))
    parts = (range(0, CHANGE, BATCH), range(CHANGE, len(Xf), BATCH))
    found = []
    for part, resume in zip(parts, ((), ("--resume",))):
        with running_service(*ARGS, *ckpt, *resume) as s, \
                Control(s.control, timeout=RECV_TIMEOUT) as control, \
                Subscriber(s.publish, topics=("events",), timeout=RECV_TIMEOUT) as events:
            time.sleep(0.2)
            with Producer(s.ingest) as producer:
                for start in part:
                    producer.send(Xf[start:start + BATCH], yf[start:start + BATCH], model="flips")
                    wait_for(control, start + BATCH)
            if resume:
                found = drift_events(events, len(expected))
            assert s.stop() == 0  # the final checkpoint, with the detector's state
    assert [(e["model"], e["version"]) for e in found] == [("flips", v) for v in expected]
