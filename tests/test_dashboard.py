"""The live dashboard: its bounded boards, its server, and the page in a real headless Chromium.

The browser is Debian's chromium driven through /usr/bin/chromedriver (no download by any
tool); without them the browser tests skip, saying so. One browser and one service serve the
whole module; every wait is bounded.
"""

import json
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import types
import urllib.error
import urllib.request

import msgpack
import numpy as np
import pytest
import zmq

from conftest import running_service, seed_stream
from streammlp import cli
from streammlp.cli import main
from streammlp.client import Control, Producer
from streammlp.dashboard import Board, Bridge, Dashboard, Seen
from streammlp.dashboard import board as board_module
from streammlp.dashboard.board import COLUMNS, heatmap

WAIT = 30.0  # seconds any one thing may take to show on the page
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1400,1300")


def metrics(samples: int, **fields) -> dict:
    """A metrics body as the service sends it, with figures that depend on ``samples``."""
    return {"v": 1, "version": samples, "ts": 1e9 + samples, "samples": samples,
            "loss": 1 / (1 + samples), "rolling_loss": 0.5, "ew_loss": 0.4,
            "accuracy": samples / (samples + 100), "rolling_accuracy": 0.75, "window": 1000,
            "confusion": [[samples, 0], [0, 0]], "samples_per_s": 1000.0,
            "rejected": {"shape": 1}, **fields}


# -- the board, without a browser -------------------------------------------------------------

def test_board_keeps_the_whole_run_in_bounded_even_points():
    board = Board()
    update, seen = board.update(Seen())
    page = []  # what a page holds, built only from updates
    for n in range(1, 20_001):
        board.metrics(metrics(10 * n))
        if n % 7 == 0:
            update, seen = board.update(seen)
            page = (page if not update["points"]["reset"] else []) + update["points"]["rows"]
    update, seen = board.update(seen)
    page = (page if not update["points"]["reset"] else []) + update["points"]["rows"]
    xs = [row[0] for row in page]
    assert len(page) < board_module.MAX_POINTS
    assert xs[0] == 10 and xs[-1] > 200_000 - 10 * 16  # from the start to (almost) the end
    steps = np.diff(xs)
    assert steps.min() == steps.max() == steps[0]  # every kept point an even stride apart
    assert xs == sorted(set(xs))
    # each kept row is exactly the message it came from
    row = page[len(page) // 2]
    expected = metrics(row[0])
    assert row[COLUMNS.index("loss")] == expected["loss"]
    assert row[COLUMNS.index("accuracy")] == expected["accuracy"]
    assert board.update(seen)[0]["points"] == {"reset": False, "rows": []}


def test_board_marks_restarts_and_keeps_x_growing():
    board = Board()
    board.metrics(metrics(500, run="a"))
    assert not board.metrics(metrics(500, run="a"))  # an idle heartbeat: same run, same samples
    board.weights(500, [np.ones((3, 4))], run="a")
    assert board.metrics(metrics(200, run="b"))  # a new run: a restart
    assert board.metrics(metrics(50))  # fewer samples and no run id: a restart too
    board.metrics(metrics(60))
    update, _ = board.update(Seen())
    assert [m["kind"] for m in update["markers"]] == ["restart", "restart"]
    assert [m["x"] for m in update["markers"]] == [500, 500]
    # each run's first point is kept, at the x where the one before it ended
    assert [row[0] for row in update["points"]["rows"]] == [500, 500, 500, 510]
    assert update["weights"] is None  # the old run's weights are not shown as the new run's
    board.weights(3, [np.ones((3, 4))])
    assert board.update(Seen())[0]["weights"]["version"] == 3


def test_board_marks_drift_and_lists_rejections_newest_first():
    board = Board()
    board.metrics(metrics(1000))
    board.event({"v": 1, "kind": "drift", "version": 800})
    for seq in range(25):
        board.event({"v": 1, "kind": "rejected", "reason": "shape", "error": f"bad {seq}", "seq": seq})
    update, _ = board.update(Seen())
    assert update["markers"] == [{"x": 800, "kind": "drift", "label": "drift"}]
    rejections = update["figures"]["rejections"]
    assert len(rejections) == board_module.MAX_REJECTIONS and rejections[0]["seq"] == 24


@pytest.mark.parametrize("shape", [(3, 4), (64, 64), (100, 7), (130, 257)])
def test_heatmap_is_block_means_of_the_transposed_weights(shape, rng):
    W = rng.normal(size=shape)
    layer, = heatmap([W])
    cells = np.array(layer["cells"])
    rows, cols = min(shape[1], board_module.MAX_CELLS), min(shape[0], board_module.MAX_CELLS)
    assert cells.shape == (rows, cols) and layer["shape"] == list(shape)
    # independently, block by block: block i of k over n items is [i*n//k, (i+1)*n//k)
    def blocks(n, k):
        return [range(i * n // k, (i + 1) * n // k) for i in range(k)]
    expected = np.array([[np.mean([W[j, i] for i in r for j in c]) for c in blocks(shape[0], cols)]
                         for r in blocks(shape[1], rows)])
    np.testing.assert_allclose(cells, expected, atol=1e-5)
    assert layer["absmax"] == np.abs(W).max()


# -- the server's rules -------------------------------------------------------------------------

def test_binding_beyond_loopback_needs_a_token(capsys):
    with pytest.raises(ValueError, match="--token"):
        Dashboard("tcp://127.0.0.1:1", None, host="0.0.0.0")
    assert main(["dashboard", "--host", "0.0.0.0", "--port", "0"]) == 2
    assert "pass --token" in capsys.readouterr().err


def test_the_model_list_checks_what_it_is_asked_before_asking_the_service():
    bridge = Bridge("tcp://127.0.0.1:1", "tcp://127.0.0.1:1")  # nothing there: nothing is sent
    alone = Bridge("tcp://127.0.0.1:1", None)
    try:
        with pytest.raises(ValueError, match="not one of active, worst, best"):
            bridge.models("newest")
        with pytest.raises(ValueError, match=r"limit 1000 is not in 1\.\.100"):
            bridge.models("active", limit=1000)
        with pytest.raises(ValueError, match="A-Z a-z 0-9"):
            bridge.watch("no spaces")
        with pytest.raises(ValueError, match="no control endpoint"):
            alone.models("active")
    finally:
        bridge.close()
        alone.close()


def test_a_models_drift_goes_on_its_board_and_its_rejections_on_the_services_too():
    bridge = Bridge("tcp://127.0.0.1:1", None)  # not started: messages are handed in below
    try:
        model = bridge.watch("m.1")
        bridge._take("metrics", metrics(500, models=2))
        bridge._take("metrics", metrics(200, model="m.1"))
        bridge._take("events", {"v": 1, "kind": "drift", "version": 150, "model": "m.1"})
        bridge._take("events", {"v": 1, "kind": "drift", "version": 100, "model": "other"})
        bridge._take("events", {"v": 1, "kind": "rejected", "reason": "shape", "model": "m.1"})
        service, _ = bridge.service.update(Seen())
        mine, _ = model.update(Seen())
        assert bridge.keyed and service["figures"]["samples"] == 500
        assert mine["figures"]["samples"] == 200
        assert service["markers"] == [] and [m["x"] for m in mine["markers"]] == [150]
        assert [r["reason"] for r in service["figures"]["rejections"]] == ["shape"]
        assert [r["reason"] for r in mine["figures"]["rejections"]] == ["shape"]
        bridge.unwatch("m.1")
        with pytest.raises(ValueError, match="A-Z a-z 0-9"):
            bridge.watch("m/1")
    finally:
        bridge.close()


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_the_data_wants_the_token_and_the_page_does_not():
    with Dashboard("tcp://127.0.0.1:1", None, port=0, token="s3cret") as d:
        assert _get(d.url + "api/check")[0] == 401
        assert _get(d.url + "api/stream")[0] == 401
        assert _get(d.url + "api/check?token=wrong")[0] == 401
        status, body = _get(d.url + "api/check?token=s3cret")
        assert status == 200 and body["publish"] == "tcp://127.0.0.1:1"
        with urllib.request.urlopen(d.url, timeout=10) as page:  # the page has no data in it
            assert b"<title>streammlp dashboard</title>" in page.read()
        with urllib.request.urlopen(d.url + "static/uplot/LICENSE", timeout=10) as licence:
            assert b"MIT" in licence.read()


def test_the_command_serves_until_sigterm():
    dashboard = subprocess.Popen([sys.executable, "-m", "streammlp.cli", "dashboard", "--port", "0",
                                  "--publish", "tcp://127.0.0.1:1", "--control", ""],
                                 stdout=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([dashboard.stdout], [], [], WAIT)
        line = dashboard.stdout.readline() if ready else ""
        url = re.search(r"dashboard: (http://127\.0\.0\.1:\d+/)", line)
        assert url, line
        assert _get(url.group(1) + "api/check") == (200, {
            "ok": True, "publish": "tcp://127.0.0.1:1", "control": None, "columns": list(COLUMNS),
            "orders": ["active", "worst", "best"]})
    finally:
        dashboard.send_signal(signal.SIGTERM)
        assert dashboard.wait(WAIT) == 0
        dashboard.stdout.close()


def test_the_demo_serves_its_dashboard_and_prints_the_address(capsys):
    assert cli._parser().parse_args(["demo", "--dashboard"]).dashboard == cli.DASHBOARD_PORT
    assert cli._parser().parse_args(["demo"]).dashboard is None
    service = types.SimpleNamespace(publish="tcp://127.0.0.1:1", control=None)
    with cli._demo_dashboard(service, 0) as board:
        printed = capsys.readouterr().out
        assert printed == f"dashboard: {board.url}\n"
        assert _get(board.url + "api/check")[0] == 200
    with pytest.raises(urllib.error.URLError):  # stopped with the demo
        urllib.request.urlopen(board.url + "api/check", timeout=5)
    with cli._demo_dashboard(service, None) as nothing:
        assert nothing is None


# -- in the browser -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser():
    """One headless Debian Chromium for the module, through Debian's chromedriver."""
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    chromedriver = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    if not (shutil.which(chromium) and shutil.which(chromedriver)):
        pytest.skip("no browser: apt-get install chromium chromium-driver (.ci/run does)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.TemporaryDirectory(prefix="streammlp-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile.name}"):
        options.add_argument(flag)
    # An explicit driver path: Selenium Manager never runs, so nothing is downloaded.
    driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()
        profile.cleanup()


def wait_for(what: str, check, timeout: float = WAIT):
    """Poll ``check()`` until it returns something true; fail saying ``what`` and the last value."""
    deadline, value = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what} within {timeout} s; last seen {value!r}")


def shown(driver, element_id: str, attribute: str = "textContent") -> str:
    return driver.execute_script(f"return document.getElementById({element_id!r}).{attribute}")


def visible(driver, element_id: str) -> bool:
    return not driver.find_element("id", element_id).get_attribute("hidden")


def shown_number(driver, element_id: str) -> int | None:
    """The integer the page shows in ``element_id`` ("12,345" -> 12345), None for none."""
    digits = shown(driver, element_id).replace(",", "")
    return int(digits) if digits.isdigit() else None


SERVE = ("--layers", "3,4,1", "--lr", "1", "--seed", "7", "--publish-every-ms", "200")


class Services:
    """The module's service; a test may replace it by a restarted one on the same endpoints."""

    def __init__(self) -> None:
        self.current = running_service(*SERVE)

    def restart(self) -> None:
        ends = self.current
        self.current.stop()
        self.current = running_service(*SERVE, "--ingest", ends.ingest, "--publish", ends.publish,
                                       "--control", ends.control, free_ports=False)


@pytest.fixture(scope="module")
def services():
    s = Services()
    try:
        yield s
    finally:
        s.current.stop()


@pytest.fixture(scope="module")
def dashboard(services):
    with Dashboard(services.current.publish, services.current.control, port=0) as d:
        yield d


@pytest.fixture
def page(dashboard, browser):
    """The dashboard of the module's service, open in the browser (opened again if a test
    took the browser elsewhere)."""
    if browser.current_url != dashboard.url:
        browser.get(dashboard.url)
    return browser


def stream(service, n: int, seed: int) -> None:
    X, y = seed_stream(n, seed=seed)
    with Producer(service.ingest) as producer:
        for i in range(0, n, 250):
            producer.send(X[i:i + 250], y[i:i + 250])
            time.sleep(0.02)


def test_the_page_shows_the_samples_the_service_counts(services, page):
    wait_for("the page says live", lambda: shown(page, "status", "dataset.state") == "live")
    feeder = threading.Thread(target=stream, args=(services.current, 20_000, 1))
    feeder.start()
    try:
        # while samples stream, the count shown climbs (not all at once at the end)
        wait_for("a count between 0 and 20,000",
                 lambda: 0 < (shown_number(page, "samples") or 0) < 20_000)
    finally:
        feeder.join(WAIT)
    with Control(services.current.control, timeout=10) as control:
        wait_for("the service trained every sample", lambda: control.stats()["samples"] == 20_000)
        expected = control.stats()["samples"]
    wait_for(f"the page shows {expected:,}", lambda: shown_number(page, "samples") == expected)
    assert not [e for e in page.get_log("browser") if e["level"] == "SEVERE"]


def test_the_weights_heatmap_version_advances(services, page):
    before = wait_for("a weights version", lambda: shown(page, "weights-version", "dataset.value"))
    stream(services.current, 3_000, seed=2)
    with Control(services.current.control, timeout=10) as control:
        version = wait_for("the service's version to move",
                           lambda: (v := control.ping()) > int(before) and v)
    wait_for(f"version {version} on the heatmap",
             lambda: int(shown(page, "weights-version", "dataset.value") or -1) >= version)
    # one canvas per layer (3-4-1: two), painted with as many cells as the layer has weights
    sizes = page.execute_script("return [...document.querySelectorAll('#heatmaps canvas')]"
                                ".map(c => [c.width, c.height])")
    assert len(sizes) == 2
    assert sizes[0][0] / sizes[0][1] == pytest.approx(3 / 4) and sizes[1][0] / sizes[1][1] == 4


def test_the_page_shows_the_service_gone_and_back_after_a_restart(services, page):
    wait_for("the page says live", lambda: shown(page, "status", "dataset.state") == "live")
    wait_for("samples on the page", lambda: shown_number(page, "samples"))
    restarts = int(page.execute_script("return document.body.dataset.restarts || 0"))
    services.current.stop()
    wait_for("the page says the service is gone",
             lambda: shown(page, "status", "dataset.state") == "gone")
    assert "service gone" in shown(page, "status")
    services.restart()  # a new run, with no samples yet, on the same endpoints
    wait_for("the page says live again", lambda: shown(page, "status", "dataset.state") == "live")
    wait_for("a restart marker", lambda: int(page.execute_script(
        "return document.body.dataset.restarts || 0")) == restarts + 1)
    stream(services.current, 1_000, seed=3)
    wait_for("the new run's count", lambda: shown_number(page, "samples") == 1_000)
    wait_for("the new run's weights", lambda: shown(page, "weights-version", "dataset.value") == "1000")


def test_the_page_asks_for_the_token(services, browser):
    with Dashboard(services.current.publish, services.current.control, port=0, token="s3cret") as d:
        browser.get(d.url)
        wait_for("the token form", lambda: visible(browser, "token-form"))
        assert shown(browser, "status", "dataset.state") == "connecting"
        assert shown(browser, "samples") == "–"  # nothing shown without the token
        browser.find_element("id", "token").send_keys("wrong\n")
        wait_for("the page says the token is wrong",
                 lambda: shown(browser, "token-error") == "wrong token")
        token = browser.find_element("id", "token")
        token.clear()
        token.send_keys("s3cret\n")
        wait_for("the page says live", lambda: shown(browser, "status", "dataset.state") == "live")
        assert not visible(browser, "token-form")
        wait_for("the samples", lambda: shown_number(browser, "samples") is not None)


# -- a keyed service; drift and a race from a stand-in --------------------------------------------

def rows_shown(driver) -> list[str]:
    return driver.execute_script(
        "return [...document.querySelectorAll('#models tbody tr')].map(tr => tr.dataset.model)")


SAMPLES_PER_KEY = {"alpha-1": 900, "beta-2": 300, "beta-3": 60, "gamma-4": 150}


def test_the_model_picker_of_a_keyed_service(browser):
    with running_service("--layers", "3,4,1", "--lr", "1", "--keyed", "--publish-every-ms", "100") as s:
        with Producer(s.ingest) as producer:
            for i, (key, n) in enumerate(SAMPLES_PER_KEY.items()):
                X, y = seed_stream(n, seed=i)
                producer.send(X, y if i % 2 else 1 - y, model=key)  # some keys learn the opposite
        with Control(s.control, timeout=10) as control:
            wait_for("every sample trained", lambda: control.ping() == sum(SAMPLES_PER_KEY.values()))
            ew = {key: control.stats(key)["ew_accuracy"] for key in SAMPLES_PER_KEY}
        with Dashboard(s.publish, s.control, port=0) as d:
            browser.get(d.url)
            wait_for("the picker", lambda: visible(browser, "picker"))
            by_samples = sorted(SAMPLES_PER_KEY, key=lambda k: -SAMPLES_PER_KEY[k])
            wait_for("most active first", lambda: rows_shown(browser) == by_samples)
            browser.find_element("css selector", "button[data-order=worst]").click()
            wait_for("worst first", lambda: rows_shown(browser) == sorted(ew, key=ew.get))
            browser.find_element("css selector", "button[data-order=best]").click()
            best = sorted(ew, key=lambda k: -ew[k])
            wait_for("best first", lambda: rows_shown(browser) == best)
            browser.find_element("id", "search").send_keys("beta")
            wait_for("the matches, best first",
                     lambda: rows_shown(browser) == [k for k in best if "beta" in k])
            assert shown_number(browser, "samples") == sum(SAMPLES_PER_KEY.values())  # the totals
            browser.find_element("css selector", "#models tr[data-model='beta-2']").click()
            wait_for("beta-2 on show", lambda: shown(browser, "viewing") == "model beta-2")
            wait_for("beta-2's samples", lambda: shown_number(browser, "samples") == 300)
            wait_for("beta-2's weights",
                     lambda: shown(browser, "weights-version", "dataset.value") == "300")
            assert "model=beta-2" in browser.current_url
            assert shown(browser, "accuracy-label") == "accuracy (exp. weighted)"
            assert shown(browser, "accuracy") == f"{100 * ew['beta-2']:.1f} %"


def test_race_members_and_drift_markers(browser):
    """From a publisher standing in for a service with --race and a drift detector."""
    race = {"leader": 1, "by": "loss", "window": 1000, "samples": 5000,
            "members": [{"member": k, "layers": [3, 8 * (k + 1), 1], "lr": 0.1 * (k + 1),
                         "ew_loss": 0.3 - 0.1 * k, "ew_accuracy": 0.6 + 0.2 * k, "loss": 0.4,
                         "accuracy": 0.7} for k in range(2)]}
    context = zmq.Context()
    publisher = context.socket(zmq.PUB)
    endpoint = f"tcp://127.0.0.1:{publisher.bind_to_random_port('tcp://127.0.0.1')}"
    stop = threading.Event()

    def publish():
        while not stop.wait(0.1):
            publisher.send_multipart([b"metrics", msgpack.packb(metrics(5000, race=race))])
            publisher.send_multipart([b"events", msgpack.packb(
                {"v": 1, "ts": time.time(), "kind": "drift", "version": 4000})])

    thread = threading.Thread(target=publish)
    thread.start()
    try:
        with Dashboard(endpoint, None, port=0) as d:
            browser.get(d.url)
            wait_for("the race", lambda: visible(browser, "race"))
            leader = browser.execute_script("return [...document.querySelectorAll("
                                            "'#race-members tr.leader td')].map(td => td.textContent)")
            assert leader == ["1", "3-16-1", "0.2", "80.0 %", "0.2000", "70.0 %", "0.4000"]
            assert "leader: member 1, by loss" in shown(browser, "race-leader")
            wait_for("drift markers", lambda: int(browser.execute_script(
                "return document.body.dataset.drifts || 0")) > 0)
    finally:
        stop.set()
        thread.join(WAIT)
        publisher.close(linger=0)
        context.term()
