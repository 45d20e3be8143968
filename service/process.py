"""Start the trainer service as a child process and stop it cleanly (for the CLI and tests)."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import tempfile

START_TIMEOUT = 120.0  # seconds to wait for the ready line (compiling on a cold, busy machine: ~60 s)
STOP_TIMEOUT = 15.0  # seconds between SIGTERM and SIGKILL
ANY_PORT = "tcp://127.0.0.1:*"


class ServiceProcess:
    """A running ``python -m service``: its endpoints, process and log file.

    Use as a context manager so it is stopped however the block ends.

    >>> with ServiceProcess("--layers", "3,4,1") as s:  # doctest: +SKIP
    ...     s.endpoints["ingest"]
    'tcp://127.0.0.1:41023'
    """

    def __init__(self, *args: str, free_ports: bool = True) -> None:
        ports = ["--publish", ANY_PORT, "--control", ANY_PORT] if free_ports else []
        if free_ports and "--source" not in args:  # (a stream is then the only input)
            ports += ["--ingest", ANY_PORT]
        self.log = tempfile.NamedTemporaryFile("w+", prefix="streammlp-", suffix=".log", delete=False)
        self.proc = subprocess.Popen([sys.executable, "-m", "service", *ports, *args],
                                     stdout=subprocess.PIPE, stderr=self.log, text=True)
        try:
            ready, _, _ = select.select([self.proc.stdout], [], [], START_TIMEOUT)
            line = self.proc.stdout.readline() if ready else ""
            self.endpoints = dict(re.findall(r"(\w+)=(tcp://\S+)", line))
            wanted = {"publish", "control"} | ({"ingest"} if " source=" not in line else set())
            if not wanted <= self.endpoints.keys():
                raise RuntimeError(f"the service did not start: {line.strip()!r}\n{self.log_text()}")
        except BaseException:
            self.stop()
            raise
        self.prometheus = next(iter(re.findall(r"prometheus=(\S+)", line)), None)
        self.ingest = self.endpoints.get("ingest")  # None with --source
        self.publish = self.endpoints["publish"]
        self.control = self.endpoints["control"]
        self.acked = self.endpoints.get("acked")  # with --ingest-acked

    def __enter__(self) -> "ServiceProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> int:
        """SIGTERM (final checkpoint and publish), SIGKILL if that takes too long; the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        return self.proc.returncode

    def log_text(self) -> str:
        with open(self.log.name) as f:
            return f.read()

    def __del__(self) -> None:
        if getattr(self, "log", None) is not None and os.path.exists(self.log.name):
            self.log.close()
            os.unlink(self.log.name)
