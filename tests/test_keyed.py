"""A keyed service (--keyed): a model per key, each trained exactly as alone."""

import time

import numpy as np
import pytest

from streammlp import MLP, Race
from streammlp.client import ALL_MODELS, Control, Producer, ServiceError, Subscriber
from streammlp.fleet import Fleet, RaceFleet, model_seed
from streammlp.protocol import encode_samples
from conftest import CLASSIFIER, running_service

RECV_TIMEOUT = 10.0
SEED = 3
ARGS = ("--layers", "3,4,1", "--lr", "1", "--no-bias", "--seed", str(SEED), "--keyed",
        "--publish-every-ms", "50")


@pytest.fixture(scope="module")
def service():
    with running_service(*ARGS) as s:
        yield s


@pytest.fixture
def control(service):
    with Control(service.control, timeout=RECV_TIMEOUT) as c:
        yield c


def wait_for(control, version, model=None):
    deadline = time.monotonic() + RECV_TIMEOUT
    while control.ping(model) < version:
        assert time.monotonic() < deadline, f"{model or 'service'} stuck at {control.ping(model)}"
        time.sleep(0.01)


def alone(key, X, y, layers=(3, 4, 1), **options) -> MLP:
    """The oracle: key's rows learned by a network of its own."""
    net = MLP(list(layers), lr=1.0, bias=False, seed=model_seed(SEED, key), **options)
    net.learn(X, y)
    return net


def assert_model_is(control, key, net):
    snap = control.snapshot(key)
    assert snap.model == key and snap.version == net.samples
    for theirs, mine in zip(snap.weights, net.weights):
        np.testing.assert_allclose(theirs, mine, rtol=0, atol=1e-12)


def test_interleaved_keys_train_each_model_exactly_as_alone(service, control, rng):
    keys = np.array(["a.1", "b-2", "c_3"])[rng.integers(0, 3, 600)]
    X = rng.uniform(-1, 1, (600, 3))
    y = (X[:, 0] >= 0).astype(float)
    before = control.ping()
    with Producer(service.ingest) as producer:
        for i in range(0, 600, 3):  # a few rows per message, each message one key
            producer.send(X[i:i + 3], y[i:i + 3], model=keys[i])
    owner = np.repeat(keys[::3], 3)
    wait_for(control, before + 600)
    for key in ("a.1", "b-2", "c_3"):
        rows = owner == key
        assert_model_is(control, key, alone(key, X[rows], y[rows]))
        stats = control.stats(key)
        assert stats["model"] == key and stats["samples"] == rows.sum()
    assert control.stats()["models"] >= 3


def test_a_bad_message_of_one_key_leaves_the_others_exact(service, control, rng):
    X = rng.uniform(-1, 1, (40, 3))
    y = (X[:, 0] >= 0).astype(float)
    bad = X[:2].copy()
    bad[1, 1] = np.nan
    rejected = control.stats()["rejected"].get("non_finite", 0)
    with Producer(service.ingest) as producer:
        for i in range(0, 40, 2):
            producer.send(X[i:i + 2], y[i:i + 2], model="good" if i % 4 else "other")
            producer.send(bad, y[:2], model="good")
    wait_for(control, 20, "good")
    wait_for(control, 20, "other")
    rows = np.repeat(np.arange(0, 40, 2) % 4 != 0, 2)
    assert_model_is(control, "good", alone("good", X[rows], y[rows]))
    assert_model_is(control, "other", alone("other", X[~rows], y[~rows]))
    assert control.stats()["rejected"]["non_finite"] == rejected + 20


def test_a_subscriber_of_one_model_gets_exactly_that_model(service, control, rng):
    X = rng.uniform(-1, 1, (10, 3))
    y = (X[:, 0] >= 0).astype(float)
    with Subscriber(service.publish, service.control, models="sensor-1", timeout=RECV_TIMEOUT,
                    topics=("weights", "metrics")) as sub:
        time.sleep(0.2)  # the subscription reaches the service
        with Producer(service.ingest) as producer:
            for key in ("sensor-10", "sensor-1", "sensor-11", "sensor-1"):
                producer.send(X, y, model=key)
        seen, totals = [], 0
        deadline = time.monotonic() + RECV_TIMEOUT
        while not seen or seen[-1][1] < 20:
            assert time.monotonic() < deadline
            topic, message = sub.recv()
            model = message.model if topic == "weights" else message.get("model")
            if model is None:
                totals += 1  # the service's totals on "metrics"
                continue
            seen.append((model, message.version if topic == "weights" else message["version"]))
    assert {model for model, _ in seen} == {"sensor-1"}
    assert seen[0] == ("sensor-1", 0)  # created: version 0 goes out before any step
    assert totals > 0


def test_every_model_is_announced_and_listed(service, control, rng):
    X = rng.uniform(-1, 1, (5, 3))
    with Subscriber(service.publish, models=ALL_MODELS, topics=("weights",),
                    timeout=RECV_TIMEOUT) as sub:
        time.sleep(0.2)
        with Producer(service.ingest) as producer:
            producer.send(X, np.zeros(5), model="new.one")
        topic, weights = sub.recv()
        while weights.model != "new.one":
            topic, weights = sub.recv()
    assert weights.version == 0
    wait_for(control, 5, "new.one")
    page = control.models(match="new.", sort="-samples")
    assert [m["model"] for m in page["models"]] == ["new.one"] and page["total"] == 1
    listing = control.models(limit=2, sort="-samples")
    assert len(listing["models"]) == 2 and listing["total"] == control.stats()["models"]
    assert listing["models"][0]["samples"] >= listing["models"][1]["samples"]
    with pytest.raises(ServiceError, match="no model 'missing'"):
        control.snapshot("missing")
    with pytest.raises(ServiceError, match="needs 'model'"):
        control.snapshot()
    with pytest.raises(ServiceError, match="sort"):
        control.models(sort="nonsense")


def test_bad_keys_are_refused_and_an_unkeyed_service_refuses_keys(rng):
    X = rng.uniform(-1, 1, (2, 3))
    frame = encode_samples(X, np.zeros(2))
    with running_service("--layers", "3,4,1") as s, Control(s.control, timeout=RECV_TIMEOUT) as c:
        with Producer(s.ingest) as producer:
            producer.socket.send(frame[:-1] + b"\x81")  # a broken frame, not counted as bad_model
            producer.send(X, np.zeros(2), model="sensor-1")
            producer.send(X, np.zeros(2))
        deadline = time.monotonic() + RECV_TIMEOUT
        while c.stats()["rejected"].get("bad_model", 0) < 1:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        wait_for(c, 2)
        with pytest.raises(ServiceError, match="one model"):
            c.snapshot("sensor-1")
    with pytest.raises(ValueError, match="1-128 characters"):
        Producer("tcp://127.0.0.1:1", model="no spaces")


def test_max_models_refuses_new_keys_and_nothing_else(rng):
    X = rng.uniform(-1, 1, (4, 3))
    y = (X[:, 0] >= 0).astype(float)
    with running_service(*ARGS, "--max-models", "2") as s, \
            Control(s.control, timeout=RECV_TIMEOUT) as control, \
            Subscriber(s.publish, topics=("events",), timeout=RECV_TIMEOUT) as events:
        time.sleep(0.2)
        with Producer(s.ingest) as producer:
            for key in ("one", "two", "three", "one", "two"):
                producer.send(X, y, model=key)
        wait_for(control, 16)
        assert control.stats()["rejected"] == {"too_many_models": 1}
        assert control.stats()["models"] == 2
        _, event = events.recv()
        assert event["reason"] == "too_many_models" and event["model"] == "three"
        assert_model_is(control, "one", alone("one", np.vstack([X, X]), np.hstack([y, y])))


# The models of the in-process fleet test below (float32, two hidden layers, scaling): the
# same fleet kernel, and a keyed service's float32 and deeper models restored, scalers too.
DEEP = dict(layers=(5, 7, 3, 2), dtype="float32", scale="standard", **CLASSIFIER)


def test_resume_restores_a_thousand_models(tmp_path, rng):
    keys = [f"m{i}" for i in range(1000)]
    X = rng.uniform(-1, 1, (3000, 5))
    y = (X[:, 0] >= 0).astype(int)
    owner = np.array(keys * 3)
    ckpt = str(tmp_path / "fleet.npz")
    args = (*ARGS, "--layers", "5,7,3,2", "--activation", "tanh", "--output", "softmax", "--loss",
            "cross_entropy", "--dtype", "float32", "--scale", "standard", "--checkpoint", ckpt)
    with running_service(*args) as s, Control(s.control, timeout=RECV_TIMEOUT) as control:
        with Producer(s.ingest) as producer:
            for i in range(2000):
                producer.send(X[i:i + 1], y[i:i + 1], model=owner[i])
        wait_for(control, 2000)
    with running_service(*args, "--resume") as s, Control(s.control, timeout=RECV_TIMEOUT) as control:
        assert control.ping() == 2000 and control.stats()["models"] == 1000
        with Producer(s.ingest) as producer:
            for i in range(2000, 3000):
                producer.send(X[i:i + 1], y[i:i + 1], model=owner[i])
        wait_for(control, 3000)
        for key in ("m0", "m517", "m999"):
            rows = owner == key
            net = alone(key, X[rows], y[rows], **DEEP)
            assert_model_is(control, key, net)
            np.testing.assert_allclose(control.snapshot(key).scaler_mean, net.scaler_mean,
                                       rtol=1e-12)
            assert control.stats(key)["samples"] == 3


def test_a_race_per_key(rng):
    X = rng.uniform(-1, 1, (400, 3))
    y = (X[:, 0] >= 0).astype(float)
    keys = np.array(["x", "y"])[rng.integers(0, 2, 400)]
    with running_service("--layers", "3,1", "--race", "--keyed", "--seed", "5") as s, \
            Control(s.control, timeout=RECV_TIMEOUT) as control:
        with Producer(s.ingest) as producer:
            for i in range(0, 400, 4):
                producer.send(X[i:i + 4], y[i:i + 4], model=keys[i])
        wait_for(control, 400)
        owner = np.repeat(keys[::4], 4)
        for key in ("x", "y"):
            race = Race.grid(3, 1, seed=model_seed(5, key))
            race.learn(X[owner == key], y[owner == key])
            snap = control.snapshot(key)
            assert snap.member == race.leader and snap.version == race.samples
            for theirs, mine in zip(snap.weights, race.weights):
                np.testing.assert_allclose(theirs, mine, rtol=0, atol=1e-12)


def test_fleet_in_process_equals_each_model_alone(rng):
    # The keyed services above train float64 fleets of one hidden layer against MLP alone, and
    # float32 ones of two hidden layers with scaling (resume); this one does the same in process.
    # (Each combination compiles a fleet kernel, ~20 s cold; its networks are the race tests'.)
    template = MLP([5, 7, 3, 2], lr=0.3, seed=1, dtype="float32", scale="standard", **CLASSIFIER)
    fleet = Fleet(template, seed=9)
    keys = [f"k{i}" for i in rng.integers(0, 7, 700)]
    keys[100:150] = ["block"] * 50  # rows in a block are trained in place, the rest copied
    X = rng.normal(size=(700, 5))
    y = rng.integers(0, 2, 700)
    whole = fleet.learn(keys[:300], X[:300], y[:300])
    fleet.learn(keys[300:], X[300:], y[300:])
    first = MLP(**{**template.spec(), "seed": model_seed(9, keys[0])})
    expected_first = first.learn(X[:1], y[:1]).sample_loss[0]
    assert whole.sample_loss[0] == expected_first
    for key in set(keys):
        rows = [i for i, k in enumerate(keys) if k == key]
        net = MLP(**{**template.spec(), "seed": model_seed(9, key)})
        result = net.learn(X[rows], y[rows])
        mine = fleet.net(key)
        np.testing.assert_array_equal(mine.params, net.params)
        assert mine.samples == len(rows) and mine.correct_total == result.correct
        np.testing.assert_array_equal(mine._scaler, net._scaler)
    again = Fleet.from_state(fleet.state())
    np.testing.assert_array_equal(again.params, fleet.params[:len(fleet)])


def test_fleet_rows_in_place_and_scattered_in_one_call(rng):
    # Model "block"'s rows are consecutive (trained where they lie in X), the others' are
    # interleaved (copied first), and "wild" diverges on a consecutive block of its own: each
    # model and each row's figures must be exactly those of the model alone. (The kernel of
    # the diverging test below: nothing more to compile.)
    layers = (3, 4, 1)
    identity = dict(activation="identity", output="identity", lr=0.05)
    fleet = Fleet(MLP(list(layers), **identity), seed=5)
    keys = [f"k{i}" for i in rng.integers(0, 3, 60)]
    keys[20:35] = ["block"] * 15
    keys[40:44] = ["wild"] * 4
    X = rng.uniform(-1, 1, (60, 3))
    X[42] = 1e300  # finite, but its gradient overflows: "wild" goes non-finite
    result = fleet.learn(keys, X, X[:, 0])
    wild = np.array(keys) == "wild"
    np.testing.assert_array_equal(result.undone, wild)
    assert "wild" in fleet and fleet.figures(fleet.slot("wild"))["samples"] == 0
    kept = np.flatnonzero(~wild)
    for key in set(keys) - {"wild"}:
        rows = [i for i, k in enumerate(keys) if k == key]
        net = MLP(list(layers), seed=model_seed(5, key), **identity)
        alone = net.learn(X[rows], X[rows, 0])
        np.testing.assert_array_equal(fleet.net(key).params, net.params)
        at = np.searchsorted(kept, rows)  # the key's rows among the rows kept
        np.testing.assert_array_equal(result.sample_loss[at], alone.sample_loss)
        np.testing.assert_array_equal(result.predicted[at], alone.predicted)
        np.testing.assert_array_equal(result.actual[at], alone.actual)
    fresh = MLP(list(layers), seed=model_seed(5, "wild"), **identity)
    np.testing.assert_array_equal(fleet.net("wild").params, fresh.params)


def test_a_fleet_of_one_model_learns_as_the_model(rng):
    # One key: every row in place, no copy; the figures come back in the rows' order.
    identity = dict(activation="identity", output="identity", lr=0.05)
    fleet = Fleet(MLP([4, 5, 1], **identity), seed=6)
    X = rng.uniform(-1, 1, (200, 4))
    result = fleet.learn(["only"] * 200, X, X[:, 1])
    net = MLP([4, 5, 1], seed=model_seed(6, "only"), **identity)
    alone = net.learn(X, X[:, 1])
    np.testing.assert_array_equal(fleet.net("only").params, net.params)
    for name in ("sample_loss", "predicted", "actual"):
        np.testing.assert_array_equal(getattr(result, name), getattr(alone, name))
    assert result.undone is None and result.correct == alone.correct


def test_race_fleet_in_process_equals_each_race_alone(rng):
    fleet = RaceFleet(lambda seed: Race.grid(3, 1, seed=seed), seed=2)  # the keyed service's races
    keys = [f"k{i}" for i in rng.integers(0, 3, 90)]
    X = rng.normal(size=(90, 3))
    y = (X[:, 0] > 0).astype(float)
    fleet.learn(keys, X, y)
    for key in set(keys):
        rows = [i for i, k in enumerate(keys) if k == key]
        race = Race.grid(3, 1, seed=model_seed(2, key))
        race.learn(X[rows], y[rows])
        for mine, theirs in zip(fleet.net(key).members, race.members):
            np.testing.assert_array_equal(mine.params, theirs.params)


def test_a_diverging_model_is_restored_and_the_others_train(rng):
    identity = dict(activation="identity", output="identity", lr=0.05)
    fleet = Fleet(MLP([2, 3, 1], **identity), seed=4)
    X = rng.uniform(-1, 1, (40, 2))
    X[17] = 1e300  # finite, but its gradient overflows: model "a" goes non-finite
    keys = ["a" if i % 2 else "b" for i in range(40)]
    fleet.learn(keys[:10], X[:10], X[:10, 0])
    before = fleet.net("a").params.copy()
    result = fleet.learn(keys[10:], X[10:], X[10:, 0])
    np.testing.assert_array_equal(result.undone, np.array(keys[10:]) == "a")
    assert result.n == 15 and fleet.figures(fleet.slot("a"))["samples"] == 5
    np.testing.assert_array_equal(fleet.net("a").params, before)
    b = MLP([2, 3, 1], seed=model_seed(4, "b"), **identity)
    b.learn(X[0::2], X[0::2, 0])
    np.testing.assert_array_equal(fleet.net("b").params, b.params)


def test_a_diverging_message_of_one_key_is_refused_alone(rng):
    args = ("--layers", "2,3,1", "--activation", "identity", "--output", "identity", "--lr", "0.05",
            "--seed", "3", "--keyed")
    X = rng.uniform(-1, 1, (40, 2))
    y = X[:, 0] - X[:, 1]
    with running_service(*args) as s, Control(s.control, timeout=RECV_TIMEOUT) as control:
        with Producer(s.ingest) as p:
            for i in range(0, 40, 4):
                p.send(X[i:i + 2], y[i:i + 2], model="calm")
                p.send(X[i + 2:i + 4], y[i + 2:i + 4], model="wild")
                if i == 20:
                    p.send(np.full((1, 2), 1e300), [0.0], model="wild")
        wait_for(control, 40)
        assert control.stats()["rejected"] == {"diverged": 1}
        for key, rows in (("calm", np.arange(40) % 4 < 2), ("wild", np.arange(40) % 4 >= 2)):
            net = MLP([2, 3, 1], activation="identity", output="identity", lr=0.05,
                      seed=model_seed(3, key))
            net.learn(X[rows], y[rows])
            assert_model_is(control, key, net)


def test_acknowledged_ingest_is_exactly_once_per_key(tmp_path, rng):
    from streammlp.client import ReliableProducer

    X = rng.uniform(-1, 1, (60, 3))
    y = (X[:, 0] >= 0).astype(float)
    with running_service(*ARGS, "--checkpoint", str(tmp_path / "acked.npz"), "--ingest-acked",
                         "tcp://127.0.0.1:*") as s, \
            Control(s.control, timeout=RECV_TIMEOUT) as control:
        with ReliableProducer(s.acked, "fleet-feeder", model="left") as producer:
            for i in range(0, 60, 6):
                producer.send(X[i:i + 3], y[i:i + 3])
                producer.send(X[i + 3:i + 6], y[i + 3:i + 6], model="right")
            producer.flush()  # every message durable: trained once, in order
        assert control.ping() == 60
        left = np.arange(60) % 6 < 3
        assert_model_is(control, "left", alone("left", X[left], y[left]))
        assert_model_is(control, "right", alone("right", X[~left], y[~left]))


def test_feed_sends_each_row_to_the_model_its_column_names(service, control, tmp_path, rng):
    from streammlp.cli import main as streammlp

    X = rng.uniform(-1, 1, (50, 3))
    y = (X[:, 0] >= 0).astype(float)
    keys = np.array(["csv-a", "csv-b"])[rng.integers(0, 2, 50)]
    path = tmp_path / "fleet.csv"
    lines = ["x1,sensor,x2,x3,output"] + [f"{a},{k},{b},{c},{t}" for (a, b, c), k, t in zip(X, keys, y)]
    path.write_text("\n".join(lines) + "\n")
    assert streammlp(["feed", str(path), "--model-column", "sensor", "--batch", "7",
                      "--ingest", service.ingest, "--control", service.control,
                      "--publish", service.publish, "--timeout", str(RECV_TIMEOUT)]) == 0
    for key in ("csv-a", "csv-b"):
        rows = keys == key
        assert_model_is(control, key, alone(key, X[rows], y[rows]))


def test_watch_follows_one_model(service, control, tmp_path, rng):
    import json
    import threading

    from streammlp.cli import main as streammlp

    X = rng.uniform(-1, 1, (4, 3))
    log = tmp_path / "watched.jsonl"

    def feed():
        with Producer(service.ingest) as producer:
            for i in range(15):
                producer.send(X, np.zeros(4), model="watched" if i % 2 else "other")
                time.sleep(0.05)
    feeder = threading.Thread(target=feed)
    feeder.start()
    assert streammlp(["watch", "--publish", service.publish, "--model", "watched",
                      "--duration", "3", "--jsonl", str(log)]) == 0
    feeder.join()
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert lines and {m["model"] for m in lines} == {"watched"}
    assert lines[-1]["samples"] == control.stats("watched")["samples"] > 0
