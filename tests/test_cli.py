"""The streammlp command: demo, feed, train, watch and plot, run as a user would."""

import json
import subprocess
import sys
import time

import numpy as np
import pytest

from streammlp import MLP
from streammlp.client import Control
from conftest import running_service, seed_stream

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TIMEOUT = 120


def streammlp(*args, check=True) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "streammlp.cli", *map(str, args)],
                            capture_output=True, text=True, timeout=TIMEOUT)
    if check and result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def write_csv(path, X, y, header=("x1", "x2", "x3", "output")):
    with open(path, "w") as f:
        f.write(",".join(header) + "\n")
        for row, target in zip(X, y):
            f.write(",".join(repr(float(v)) for v in [*row, target]) + "\n")


def test_demo_learns_the_waveform_task_and_draws_its_curve(tmp_path):
    png = tmp_path / "curve.png"
    out = streammlp("demo", "--samples", 60000, "--rate", 0, "--drift", 40000, "--window", 1000,
                    "-o", png).stdout
    final = float(out.split("final rolling accuracy ")[1].split("%")[0]) / 100
    assert final > 0.5  # chance is 0.25; the default run reaches ~0.78
    assert "60,000 samples" in out
    # The labels are permuted at 40,000: the service's detector says so, a few hundred rows on.
    detected = [int(v.replace(",", "")) for v in out.split("drift detected at ")[1].split("\n")[0].split(", ")]
    assert 40_000 < detected[0] <= 41_000 and all(v > 40_000 for v in detected)
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 10_000


def test_feed_trains_exactly_like_learn(tmp_path):
    X, y = seed_stream(1500, seed=3)
    write_csv(tmp_path / "data.csv", X, y)
    with running_service("--layers", "3,4,1", "--lr", "1", "--seed", "4") as s:
        out = streammlp("feed", tmp_path / "data.csv", "--ingest", s.ingest, "--batch", 100).stdout
        assert "sent      1,500 / 1,500 (100%)" in out
        with Control(s.control, timeout=10) as c:
            deadline = time.monotonic() + 10
            while c.ping() < 1500 and time.monotonic() < deadline:
                time.sleep(0.02)
            snap = c.snapshot()
    net = MLP([3, 4, 1], lr=1.0, seed=4)
    net.learn(X, y)
    assert snap.version == 1500
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
                                    "--duration", "3"], stdout=subprocess.PIPE, text=True)
        try:
            time.sleep(1.0)
            write_csv(tmp_path / "d.csv", X, y)
            streammlp("feed", tmp_path / "d.csv", "--ingest", s.ingest, "--rate", 3000)
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
