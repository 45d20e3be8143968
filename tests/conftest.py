"""Shared test helpers."""

import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def seed_stream(n: int, seed: int = 0):
    """The seed's kind of data: 3-D points in [-1, 1], class 1 when the first coordinate >= 0."""
    r = np.random.default_rng(seed)
    X = r.uniform(-1, 1, (n, 3))
    return X, (X[:, 0] >= 0).astype(float)


# -- a real service process on 127.0.0.1 with OS-assigned ports -----------------------------------

import contextlib
import re
import select
import signal
import subprocess
import sys
import tempfile

START_TIMEOUT = 60.0  # seconds for a service to print its ready line (compiling on a cold cache)
STOP_TIMEOUT = 15.0


class Service:
    """A running ``python -m service``: its endpoints, process and log."""

    def __init__(self, proc: subprocess.Popen, endpoints: dict, log_path: str) -> None:
        self.proc, self.endpoints, self.log_path = proc, endpoints, log_path
        self.ingest, self.publish, self.control = (endpoints["ingest"], endpoints["publish"],
                                                   endpoints["control"])

    def stop(self) -> int:
        """SIGTERM, then wait; SIGKILL if it does not stop in time. The exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def log(self) -> str:
        with open(self.log_path) as f:
            return f.read()


@contextlib.contextmanager
def running_service(*args: str):
    """Start the service with ``args`` on free loopback ports; always stop it."""
    log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)
    cmd = [sys.executable, "-m", "service", "--ingest", "tcp://127.0.0.1:*",
           "--publish", "tcp://127.0.0.1:*", "--control", "tcp://127.0.0.1:*", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True)
    service = None
    try:
        ready, _, _ = select.select([proc.stdout], [], [], START_TIMEOUT)
        line = proc.stdout.readline() if ready else ""
        endpoints = dict(re.findall(r"(\w+)=(tcp://\S+)", line))
        if len(endpoints) != 3:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"service did not start: {line!r}\n{open(log.name).read()}")
        service = Service(proc, endpoints, log.name)
        yield service
    finally:
        if service is not None:
            service.stop()
        elif proc.poll() is None:
            proc.kill()
            proc.wait()
