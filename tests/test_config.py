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
