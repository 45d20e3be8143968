"""The service's settings: defaults written once, nonsense refused at start with one line."""

import pytest

from service.config import TrainerConfig
from service.serve import main as serve, parse_args


@pytest.mark.parametrize("option, value", [
    ("--window", "0"), ("--publish-every-ms", "-5"), ("--checkpoint-every-s", "-1"),
    ("--publish-every-samples", "0"), ("--durable-every-messages", "0"),
    ("--publish-every-ms", "nan"), ("--prometheus-port", "70000"), ("--refused-log-every-s", "0"),
])
def test_bad_numbers_are_refused_before_anything_starts(option, value, caplog):
    assert serve(["--ingest", "tcp://127.0.0.1:*", option, value]) == 2
    [error] = [r.getMessage() for r in caplog.records]
    assert f"{option} {value}" in error and "\n" not in error


def test_the_options_take_their_defaults_from_the_config():
    args = vars(parse_args([]))
    for name, default in vars(TrainerConfig()).items():
        assert args[name] == default, name


def test_a_race_takes_the_network_options_given_and_refuses_a_learning_rate(caplog):
    from service.serve import fresh_model
    from streammlp import Race

    served = fresh_model(parse_args(["--layers", "3,1", "--race", "--output", "identity",
                               "--loss", "sse", "--activation", "tanh", "--seed", "4"]))
    alone = Race.grid(3, 1, output="identity", loss="sse", activation="tanh", seed=4)
    assert served.by == alone.by == "loss"
    assert [m.spec() for m in served.members] == [m.spec() for m in alone.members]
    # Options left out are Race.grid's, not a single network's (lr 1, uniform, SSE).
    assert [m.spec() for m in fresh_model(parse_args(["--layers", "3,1", "--race"])).members] == \
        [m.spec() for m in Race.grid(3, 1).members]
    assert serve(["--ingest", "tcp://127.0.0.1:*", "--race", "--lr", "0.5"]) == 2
    [error] = [r.getMessage() for r in caplog.records]
    assert "--lr 0.5 with --race" in error and "\n" not in error


def test_a_network_takes_the_options_given_and_the_seed_rule_otherwise():
    from service.serve import fresh_model

    assert fresh_model(parse_args([])).spec() == dict(
        layers=[3, 4, 1], activation="logistic", output="logistic", loss="sse", lr=1.0,
        bias=True, init="uniform", seed=None, dtype="float64", scale=None)
    net = fresh_model(parse_args(["--lr", "0.25", "--no-bias", "--init", "glorot", "--seed", "1"]))
    assert (net.lr, net.bias, net.init, net.seed) == (0.25, False, "glorot", 1)
