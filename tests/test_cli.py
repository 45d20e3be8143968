"""The streammlp command: demo, feed, train, watch and plot, run as a user would."""

import argparse
import contextlib
import io
import json
import subprocess
import sys
import time

import numpy as np
import pytest

from streammlp import MLP
from streammlp.cli import main
from streammlp.client import Control
from conftest import running_service, seed_stream

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TIMEOUT = 120


def command(*args, check=True) -> subprocess.CompletedProcess:
    """``python -m streammlp.cli *args``: the command line itself, in a process of its own."""
    result = subprocess.run([sys.executable, "-m", "streammlp.cli", *map(str, args)],
                            capture_output=True, text=True, timeout=TIMEOUT)
    return checked(result, check)


def streammlp(*args, check=True) -> subprocess.CompletedProcess:
    """The command's ``main`` run in this process, with its exit code and output as
    :func:`command` gives them: without an interpreter to start (~1 s of CPU a run)."""
    argv = [str(a) for a in args]
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            code = main(argv)
        except SystemExit as e:  # argparse: a bad option, --help, --version
            code = e.code if isinstance(e.code, int) else int(e.code is not None)
    return checked(subprocess.CompletedProcess(["streammlp", *argv], code, stdout.getvalue(),
                                               stderr.getvalue()), check)


def checked(result: subprocess.CompletedProcess, check: bool) -> subprocess.CompletedProcess:
    if check and result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def write_csv(path, X, y, header=("x1", "x2", "x3", "output")):
    with open(path, "w") as f:
        f.write(",".join(header) + "\n")
        for row, target in zip(X, y):
            f.write(",".join(repr(float(v)) for v in [*row, target]) + "\n")


@pytest.fixture(scope="module")
def service():
    """One service for the checks below that need one (it compiles once)."""
    with running_service("--layers", "3,4,1", "--lr", "1", "--seed", "4",
                         "--publish-every-ms", "50") as s:
        yield s


def free_endpoint() -> str:
    import zmq
    with zmq.Context() as ctx, ctx.socket(zmq.PULL) as probe:
        port = probe.bind_to_random_port("tcp://127.0.0.1")
        probe.unbind(f"tcp://127.0.0.1:{port}")
    return f"tcp://127.0.0.1:{port}"


def endpoints(s) -> list[str]:
    return ["--ingest", s.ingest, "--control", s.control, "--publish", s.publish]


def twin_of(control) -> MLP:
    """A local network holding the service's current weights, to replay samples on."""
    net, snap = MLP([3, 4, 1], lr=1.0), control.snapshot()
    for mine, theirs in zip(net.weights + net.biases, snap.weights + snap.biases):
        mine[...] = theirs
    return net


def test_demo_learns_the_waveform_task_and_draws_its_curve(tmp_path):
    png = tmp_path / "curve.png"
    out = command("demo", "--samples", 60000, "--rate", 0, "--drift", 40000, "--window", 1000,
                  "-o", png).stdout
    final = float(out.split("final rolling accuracy ")[1].split("%")[0]) / 100
    assert final > 0.5  # chance is 0.25; the default run reaches ~0.78
    assert "60,000 samples" in out
    # The labels are permuted at 40,000: the service's detector says so, a few hundred rows on.
    detected = [int(v.replace(",", "")) for v in out.split("drift detected at ")[1].split("\n")[0].split(", ")]
    assert 40_000 < detected[0] <= 41_000 and all(v > 40_000 for v in detected)
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 10_000


def test_feed_trains_exactly_like_learn(service, tmp_path):
    X, y = seed_stream(1500, seed=3)
    write_csv(tmp_path / "data.csv", X, y)
    with Control(service.control, timeout=10) as c:
        net, start = twin_of(c), c.ping()
        out = streammlp("feed", tmp_path / "data.csv", *endpoints(service), "--batch", 100).stdout
        assert "sent      1,500 / 1,500 (100%)" in out
        assert "trained 1,500 of 1,500 samples" in out  # counted by the service, not by feed
        snap = c.snapshot()
    net.learn(X, y)
    assert snap.version == start + 1500
    for mine, theirs in zip(net.weights + net.biases, snap.weights + snap.biases):
        np.testing.assert_allclose(theirs, mine, rtol=0, atol=1e-12)


@pytest.mark.parametrize("content,message", [
    ("x1,x2,x3,output\n1,2,3,1\n4,5,6\n", "line 3: 3 fields; the header has 4"),
    ("x1,x2,x3,output\n1,2,3,1\n1,2,3,1\n4,five,6,0\n", "line 4: could not convert string to float: 'five'"),
    ("x1,x2,x3,label\n1,2,3,1\n", "line 1: no column 'output'"),
    ("", "empty file"),
])
def test_malformed_csv_is_refused_naming_the_line(tmp_path, content, message):
    (tmp_path / "bad.csv").write_text(content)
    result = streammlp("feed", tmp_path / "bad.csv", "--ingest", "tcp://127.0.0.1:1", check=False)
    assert result.returncode == 2
    assert message in result.stderr


def test_train_and_validate_like_the_seed_program(tmp_path):
    X, y = seed_stream(20000, seed=5)
    Xv, yv = seed_stream(2000, seed=6)
    write_csv(tmp_path / "train.csv", X, y)
    write_csv(tmp_path / "valid.csv", Xv, yv)
    out = streammlp("train", tmp_path / "train.csv", "--validate", tmp_path / "valid.csv",
                    "--layers", "3,4,1", "--lr", 1, "--no-bias", "--seed", 0,
                    "--save", tmp_path / "net.npz").stdout
    percent = float(out.split("validation: ")[1].split("%")[0])
    assert percent > 95
    # The printed figure is the saved network's, recomputed independently here.
    net = MLP.load(tmp_path / "net.npz")
    assert percent == pytest.approx(100 * np.mean(net.predict_class(Xv) == yv), abs=0.005)


def test_watch_records_metrics_and_plot_draws_them(tmp_path):
    log, png = tmp_path / "metrics.jsonl", tmp_path / "curve.png"
    X, y = seed_stream(3000)
    with running_service("--layers", "3,4,1", "--lr", "1", "--publish-every-ms", "50") as s:
        watcher = subprocess.Popen([sys.executable, "-m", "streammlp.cli", "watch", "--publish",
                                    s.publish, "--control", s.control, "--jsonl", str(log),
                                    "--duration", "6"], stdout=subprocess.PIPE, text=True)
        try:
            write_csv(tmp_path / "d.csv", X, y)
            # Feed once the watcher records (the idle service's heartbeat), so it sees the run.
            deadline = time.monotonic() + TIMEOUT
            while not log.exists() or not log.read_text():
                assert watcher.poll() is None and time.monotonic() < deadline, "watch never recorded"
                time.sleep(0.05)
            streammlp("feed", tmp_path / "d.csv", *endpoints(s), "--rate", 3000)
            out, _ = watcher.communicate(timeout=TIMEOUT)
        finally:
            watcher.kill()
            watcher.wait()
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert records[-1]["samples"] == 3000
    samples = [r["samples"] for r in records]
    assert samples == sorted(samples) and len(set(samples)) > 2
    assert "samples" in out
    streammlp("plot", log, "-o", png)
    assert png.read_bytes()[:8] == PNG_MAGIC


# -- nothing silently lost, nothing falsely reported (issue 13) -------------------------------------

def test_feed_with_no_service_says_so_and_fails(tmp_path):
    X, y = seed_stream(2000)
    write_csv(tmp_path / "d.csv", X, y)
    nowhere = free_endpoint()
    started = time.monotonic()
    result = streammlp("feed", tmp_path / "d.csv", "--ingest", nowhere, "--control", nowhere,
                       "--publish", nowhere, "--timeout", 1, check=False)
    assert result.returncode != 0
    assert "100%" not in result.stdout
    assert "is the service running?" in result.stderr
    assert time.monotonic() - started < 20


def test_feed_confirms_what_was_trained_and_reports_rejections(service, tmp_path):
    X, y = seed_stream(1000, seed=9)
    X[250, 1] = np.nan  # in the third message of 100 rows
    write_csv(tmp_path / "nan.csv", X, y)
    with Control(service.control, timeout=10) as c:
        before = c.ping()
    result = streammlp("feed", tmp_path / "nan.csv", *endpoints(service), "--batch", 100,
                       "--timeout", 10, check=False)
    assert result.returncode == 1
    assert "trained 900 of 1,000 samples" in result.stdout
    assert "rejected 1 message(s), 100 samples, as non_finite" in result.stderr
    assert f"samples 201-300 of {tmp_path / 'nan.csv'}" in result.stderr
    with Control(service.control, timeout=10) as c:
        assert c.ping() == before + 900  # the service's own count agrees
    write_csv(tmp_path / "two.csv", X[:10, :2], y[:10], header=("a", "b", "output"))
    result = streammlp("feed", tmp_path / "two.csv", *endpoints(service), "--timeout", 10, check=False)
    assert result.returncode == 1
    assert "trained 0 of 10 samples" in result.stdout
    assert "as shape: X has 2 columns; this network takes 3" in result.stderr


def test_watch_names_the_endpoint_that_did_not_answer():
    publish, control = free_endpoint(), free_endpoint()
    result = streammlp("watch", "--publish", publish, "--control", control, "--timeout", 0.5,
                       check=False)
    assert result.returncode != 0
    assert control in result.stderr and publish not in result.stderr


def test_watch_records_strict_json(tmp_path):
    with running_service("--layers", "3,4,1", "--publish-every-ms", "50") as idle:  # NaN figures
        streammlp("watch", "--publish", idle.publish, "--jsonl", tmp_path / "m.jsonl",
                  "--duration", 0.5)
    lines = (tmp_path / "m.jsonl").read_text().splitlines()

    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    records = [json.loads(line, parse_constant=refuse) for line in lines]
    assert records and records[0]["accuracy"] is None and records[0]["samples"] == 0
    result = streammlp("plot", tmp_path / "m.jsonl", "-o", tmp_path / "empty.png", check=False)
    assert result.returncode != 0 and "no samples were trained" in result.stderr
    assert not (tmp_path / "empty.png").exists()


def test_live_display_measures_the_rate_and_skips_repeated_lines(monkeypatch):
    import io
    from streammlp import display

    monkeypatch.setattr(display, "PLAIN_EVERY_S", 0.0)
    out = io.StringIO()
    m = dict(samples=0, samples_per_s=0.0, accuracy=0.5, rolling_accuracy=0.5, loss=0.1,
             rolling_loss=0.1, rejected={})
    with display.LiveDisplay("t", stream=out) as shown:
        shown.update({**m, "ts": 0.0})
        shown.update({**m, "ts": 0.2, "samples": 20_000, "samples_per_s": 100_000.0})  # a burst
        for i in range(2, 16):  # then idle, published every 0.2 s as a heartbeat
            shown.update({**m, "ts": 0.2 * i, "samples": 20_000})
    lines = out.getvalue().splitlines()[1:]
    assert all(a != b for a, b in zip(lines, lines[1:]))  # nothing printed twice while idle
    assert any("20,000/s" in line for line in lines)  # 20,000 samples over the first second
    assert lines[-1].split()[2] == "0/s"  # and none since


def test_train_names_the_file_and_line_of_a_nan(tmp_path):
    X, y = seed_stream(10)
    X[6, 2] = np.nan
    write_csv(tmp_path / "nan.csv", X, y)
    result = streammlp("train", tmp_path / "nan.csv", check=False)
    assert result.returncode == 2
    assert f"{tmp_path / 'nan.csv'}, line 8: x3 is nan" in result.stderr


def test_train_checks_everything_before_training(tmp_path):
    X, y = seed_stream(200)
    write_csv(tmp_path / "t.csv", X, y)
    write_csv(tmp_path / "v.csv", X[:, :2], y, header=("a", "b", "output"))
    result = streammlp("train", tmp_path / "t.csv", "--validate", tmp_path / "v.csv", check=False)
    assert result.returncode == 2 and "epoch" not in result.stdout
    assert "v.csv has 2 input columns" in result.stderr
    result = streammlp("train", tmp_path / "t.csv", "--save", tmp_path / "nowhere" / "x.npz",
                       check=False)
    assert result.returncode == 2 and "epoch" not in result.stdout
    assert "no directory" in result.stderr and ".tmp" not in result.stderr
    for bad in (["--epochs", 0], ["--lr", -1], ["--layers", "3,0,1"]):
        result = streammlp("train", tmp_path / "t.csv", *bad, check=False)
        assert result.returncode == 2 and "epoch" not in result.stdout, bad
    result = streammlp("train", tmp_path / "t.csv", "--layers", "3,1000000000000,1", check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "not enough memory" in result.stderr and len(result.stderr.splitlines()) == 1


def test_train_takes_the_input_count_from_the_file(tmp_path):
    X = np.random.default_rng(3).uniform(-1, 1, (500, 5))
    write_csv(tmp_path / "five.csv", X, (X[:, 4] >= 0).astype(float),
              header=("a", "b", "c", "d", "e", "output"))
    out = streammlp("train", tmp_path / "five.csv", "--save", tmp_path / "n.npz").stdout
    assert "epoch 1: 500 samples" in out
    assert MLP.load(tmp_path / "n.npz").layers == [5, 4, 1]
    result = streammlp("train", tmp_path / "five.csv", "--layers", "3,4,1", check=False)
    assert result.returncode == 2 and "five.csv has 5 input columns; --layers 3,4,1 takes 3" in result.stderr


def test_demo_refuses_numbers_that_make_no_run():
    for bad in (["--samples", 0], ["--window", 0], ["--rate", -5], ["--batch", 0]):
        result = streammlp("demo", *bad, check=False)
        assert result.returncode == 2 and "expected" in result.stderr, bad
        assert "accuracy" not in result.stdout


def test_keygen_without_a_server_key_suggests_no_client_key_to_serve_with(tmp_path):
    out = streammlp("keygen", tmp_path, "client").stdout
    assert "client.key_secret" in out and "--curve-secret" not in out.replace(
        "(--curve-server-key)", "")
    assert "serve with --curve-secret" in streammlp("keygen", tmp_path / "k").stdout


def test_help_describes_every_command_and_option():
    from streammlp.cli import _parser

    parser = _parser()
    assert command("--version").stdout.startswith("streammlp ")
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in commands.choices.items():
        if name == "serve":
            continue
        assert sub.description, name
        for action in sub._actions:
            assert action.help, (name, action.dest)
    train = command("train", "--help").stdout
    assert "{identity,logistic,tanh,relu}" in train and "(default: 1.0)" in train


def test_demo_refuses_layers_its_task_cannot_feed():
    for task, layers in (("points", "5,4,1"), ("waveforms", "32,64,3")):
        result = streammlp("demo", "--task", task, "--layers", layers, "--samples", 1000, check=False)
        assert result.returncode == 2 and "task has" in result.stderr, (task, result.stderr)


def test_train_refuses_targets_that_are_not_class_labels(tmp_path):
    X, _ = seed_stream(20)
    y = np.arange(20) % 3 + 0.0
    y[5] = 1.7
    write_csv(tmp_path / "c.csv", X, y)
    result = streammlp("train", tmp_path / "c.csv", "--layers", "3,4,3", check=False)
    assert result.returncode == 2 and "target 1.7 of sample 6 is not a class label" in result.stderr
