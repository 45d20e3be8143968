"""Soak of the live dashboard: a page open for ``--minutes`` on a service publishing every 200 ms.

A service (``--publish-every-ms 200``, the demo's waveforms net 32-64-4) is fed
``--rate`` samples/s of the waveforms stream by a thread of this process,
with a drift every ``--drift-every`` samples; ``streammlp.dashboard.Dashboard``
runs in this process and headless Debian Chromium (``/usr/bin/chromium``
through ``/usr/bin/chromedriver``, nothing downloaded) keeps its page open.
Every ``--every`` seconds it prints:

- the tab's JS heap as Chromium counts it (CDP ``Performance.getMetrics``:
  ``JSHeapUsedSize``), before and after a forced garbage collection
  (``HeapProfiler.collectGarbage``), and its DOM nodes and event listeners;
- whether the page keeps up: the samples it shows against the service's
  ``stats`` read right after (the lag, in seconds at the feed rate, an upper
  bound), and the updates it took since the last line;
- the resident memory of this process (the dashboard's server and subscriber).

At the end: each figure's median over the second half of the lines against its
median over the first half, from one minute on (once the page is warm): a leak
shows as a ratio above 1 that grows with ``--minutes``. Run from the
repository root (10 minutes; ``--minutes 1`` for a quick look)::

    python bench/dashboard.py
    python bench/dashboard.py --minutes 1 --every 10

Figures are printed, never asserted: the machine is shared.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import tempfile
import threading
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

# Run as a script, this file's folder comes first on sys.path, and bench/service.py would hide
# the ``service`` package: take the folder off.
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != HERE]

from service.process import ServiceProcess  # noqa: E402
from streammlp import signals  # noqa: E402
from streammlp.client import Control, Producer  # noqa: E402
from streammlp.dashboard import Dashboard  # noqa: E402

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1400,1300")
SERVE = ("--layers", "32,64,4", "--activation", "tanh", "--output", "softmax", "--loss",
         "cross_entropy", "--lr", "0.01", "--init", "glorot", "--scale", "standard",
         "--publish-every-ms", "200", "--window", "2000")
WARM_S = 60.0  # the first line that counts as the baseline comes after this


def feed(ingest: str, rate: float, drift_every: int, stop: threading.Event) -> None:
    """The waveforms stream at ``rate`` samples/s, its concept drifting every ``drift_every``."""
    with Producer(ingest) as producer:
        sent, start = 0, time.monotonic()
        for part in itertools.count():
            for X, y in signals.waveforms(drift_every, batch=100, seed=part,
                                          drift_at=drift_every // 2):
                if stop.is_set():
                    return
                producer.send(X, y)
                sent += len(X)
                time.sleep(max(0.0, start + sent / rate - time.monotonic()))


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def tab(driver) -> dict:
    """The tab's heap (MiB), nodes and listeners, as Chromium counts them."""
    m = {x["name"]: x["value"] for x in driver.execute_cdp_cmd("Performance.getMetrics", {})["metrics"]}
    return {"heap": m["JSHeapUsedSize"] / 2**20, "nodes": m["Nodes"],
            "listeners": m["JSEventListeners"]}


def ratio(later: list[dict], earlier: list[dict], key: str) -> str:
    """Median of ``key`` over ``later`` lines / its median over ``earlier`` ones, and both."""
    a, b = statistics.median(x[key] for x in later), statistics.median(x[key] for x in earlier)
    return f"{a / b:.2f}x ({b:.4g} -> {a:.4g})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--every", type=float, default=30.0, help="seconds between lines")
    parser.add_argument("--rate", type=float, default=2000.0, help="samples/s fed")
    parser.add_argument("--drift-every", type=int, default=200_000)
    args = parser.parse_args()

    profile = tempfile.TemporaryDirectory(prefix="streammlp-soak-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile.name}"):
        options.add_argument(flag)
    stop = threading.Event()
    with ServiceProcess(*SERVE) as service, \
            Dashboard(service.publish, service.control, port=0) as board, \
            Control(service.control, timeout=10) as control:
        driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
        feeder = threading.Thread(target=feed, args=(service.ingest, args.rate, args.drift_every, stop))
        try:
            driver.execute_cdp_cmd("Performance.enable", {})
            driver.get(board.url)
            feeder.start()
            print(f"soak: {args.minutes:g} min, service publishing every 200 ms, {args.rate:,.0f} "
                  f"samples/s fed, page {board.url}")
            print(f"{'s':>5} {'heap MiB':>9} {'after GC':>9} {'nodes':>6} {'listen':>6} "
                  f"{'service':>10} {'page':>10} {'lag s':>6} {'updates':>8} {'py RSS':>7}")
            start, lines, updates = time.monotonic(), [], 0
            end = start + args.minutes * 60
            while time.monotonic() < end:
                time.sleep(max(0.0, min(args.every, end - time.monotonic())))
                # the page first: the service's count read just after it bounds the lag from above
                page = driver.execute_script("return [Number(document.getElementById('samples')"
                                             ".dataset.value || 0), state.updates]")
                samples = control.stats()["samples"]
                raw = tab(driver)
                driver.execute_cdp_cmd("HeapProfiler.collectGarbage", {})
                after = tab(driver)
                line = dict(t=time.monotonic() - start, heap=raw["heap"], gc=after["heap"],
                            nodes=after["nodes"], listeners=after["listeners"], service=samples,
                            page=page[0], updates=page[1] - updates, rss=rss_mib())
                updates = page[1]
                lines.append(line)
                print(f"{line['t']:5.0f} {line['heap']:9.2f} {line['gc']:9.2f} {line['nodes']:6.0f} "
                      f"{line['listeners']:6.0f} {samples:10,} {page[0]:10,} "
                      f"{(samples - page[0]) / args.rate:6.2f} {line['updates']:8} {line['rss']:7.1f}",
                      flush=True)
            warm = [x for x in lines if x["t"] >= WARM_S] or lines
            first, last = warm[:len(warm) // 2] or warm, warm[len(warm) // 2:]
            print(f"second half / first half after {WARM_S:.0f} s (medians of {len(last)} and "
                  f"{len(first)} lines): heap after GC {ratio(last, first, 'gc')}, DOM nodes "
                  f"{ratio(last, first, 'nodes')}, listeners {ratio(last, first, 'listeners')}, "
                  f"python RSS {ratio(last, first, 'rss')}; heap after GC from "
                  f"{min(x['gc'] for x in warm):.2f} to {max(x['gc'] for x in warm):.2f} MiB; "
                  f"page behind the service by at most "
                  f"{max(x['service'] - x['page'] for x in lines) / args.rate:.2f} s of samples")
        finally:
            stop.set()
            if feeder.is_alive():
                feeder.join()
            driver.quit()
            profile.cleanup()


if __name__ == "__main__":
    main()
