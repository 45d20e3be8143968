"""The ``streammlp`` command: demo, serve, watch, feed, plot and train."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import sys
import threading
import time

import numpy as np

from . import __version__, jetstream, protocol, signals
from .client import Control, Producer, Subscriber
from .display import LiveDisplay
from .files import read_samples
from .network import ACTIVATIONS, MLP

DASHBOARD_PORT = 8050
RECV_TIMEOUT = 10.0  # seconds without a metrics message before demo/watch give up
CONFIRM_TIMEOUT = 30.0  # seconds feed waits, without progress, for the service to account for every row

# Built-in tasks for the demo: stream, model options and the chance level.
TASKS = {
    "waveforms": dict(stream=signals.waveforms, layers="32,64,4", activation="tanh", lr=0.01,
                      classes=4, softmax=True),
    "bands": dict(stream=signals.bands, layers="64,64,4", activation="relu", lr=0.01,
                  classes=4, softmax=True),
    "points": dict(stream=signals.points, layers="3,4,1", activation="logistic", lr=1.0,
                   classes=2, softmax=False),
}


def _stream(producer: Producer, batches, rate: float, stop: threading.Event,
            errors: list[Exception]) -> None:
    """Send ``batches`` paced to ``rate`` samples/s (0: as fast as the service takes them);
    an error goes into ``errors``, for the main thread to report."""
    sent, start = 0, time.monotonic()
    try:
        for X, y in batches:
            if stop.is_set():
                return
            producer.send(X, y)
            sent += len(X)
            if rate:
                time.sleep(max(0.0, start + sent / rate - time.monotonic()))
    except (OSError, TimeoutError, ValueError) as e:
        errors.append(e)


def demo(args: argparse.Namespace) -> int:
    """Start a service, stream a built-in signal task into it and watch it learn live."""
    from service.process import ServiceProcess

    task = TASKS[args.task]
    if args.drift is not None and args.drift >= args.samples:
        args.drift = None  # past the end of the stream: no drift to show
    layers = args.layers or task["layers"]
    sizes = _layers(layers)
    inputs, outputs = (3, 1) if args.task == "points" else (sizes[0], task["classes"])
    if (sizes[0], sizes[-1]) != (inputs, outputs):
        raise ValueError(f"--layers {layers}: the {args.task} task has {inputs} inputs and "
                         f"{outputs} output{'s' if outputs > 1 else ''}, such as {task['layers']}")
    serve = ["--layers", layers, "--activation", task["activation"], "--lr", str(args.lr or task["lr"]),
             "--init", "glorot", "--scale", "standard", "--seed", str(args.seed),
             "--publish-every-ms", "100",
             "--window", str(args.window)]
    if task["softmax"]:
        serve += ["--output", "softmax", "--loss", "cross_entropy"]
    window = sizes[0]
    batches = task["stream"](args.samples, batch=args.batch, drift_at=args.drift, seed=args.seed,
                             **({} if args.task == "points" else {"window": window}))
    drift = f", drift at {args.drift:,}" if args.drift is not None else ""
    title = f"streammlp demo: {args.task} ({layers}), {args.samples:,} samples{drift}"
    history: list[dict] = []
    stop, errors = threading.Event(), []
    with ServiceProcess(*serve) as service, _demo_dashboard(service, args.dashboard), \
            Subscriber(service.publish, topics=("metrics",), timeout=RECV_TIMEOUT) as sub, \
            Producer(service.ingest) as producer, LiveDisplay(title, total=args.samples) as display:
        feeder = threading.Thread(target=_stream, args=(producer, batches, args.rate, stop, errors),
                                  daemon=True)
        feeder.start()
        progress_at = time.monotonic()
        try:
            while not history or history[-1]["samples"] < args.samples:
                _, m = sub.recv()
                if not history or m["samples"] > history[-1]["samples"]:
                    progress_at = time.monotonic()
                history.append(m)
                display.update(m)
                # Everything sent, but the count stands still (rejections): stop waiting.
                if not feeder.is_alive() and (errors or time.monotonic() - progress_at > RECV_TIMEOUT):
                    break
        finally:
            stop.set()
            feeder.join()
    if errors:
        raise errors[0]
    final = history[-1]
    seconds = final["ts"] - history[0]["ts"]
    rejected = final["rejected"]
    print(f"done: {final['samples']:,} samples in {seconds:.1f} s; prequential accuracy "
          f"{final['accuracy']:.1%}, loss {final['loss']:.4f}; rejected {sum(rejected.values())}")
    if final["samples"] < args.samples:
        print(f"only {final['samples']:,} of {args.samples:,} samples were trained; rejected "
              f"messages: {rejected}", file=sys.stderr)
        return 1
    print(f"final rolling accuracy {final['rolling_accuracy']:.1%} over the last "
          f"{final['window']:,} samples (chance {1 / task['classes']:.0%})")
    from .plot import detected_drifts, learning_curve

    detected = detected_drifts(history)
    print("drift detected at " + (", ".join(f"{v:,}" for v in detected) or "no sample"))
    if args.output != "-":
        try:
            learning_curve(history, args.output, title=title, drift_at=args.drift)
            print(f"learning curve: {args.output}")
        except RuntimeError as e:
            print(f"no learning curve: {e}")
    return 0


@contextlib.contextmanager
def _demo_dashboard(service, port: int | None):
    """The demo's dashboard on ``port`` while the demo runs (nothing without a port); on a
    terminal it stays until Enter, so the finished run can be looked at."""
    if port is None:
        yield None
        return
    Dashboard = _dashboard_class()
    with Dashboard(service.publish, service.control, port=port) as board:
        print(f"dashboard: {board.url}", flush=True)
        yield board
        if sys.stdin.isatty():
            input(f"demo done; the dashboard stays at {board.url} until you press Enter ")


def watch(args: argparse.Namespace) -> int:
    """Show the live metrics of a running service (or of one model of a keyed one)."""
    record = open(args.jsonl, "a") if args.jsonl else None
    try:
        curve = _curve(args)
        title = f"streammlp watch: {args.publish}" + (f" model {args.model}" if args.model else "")
        with Subscriber(args.publish, topics=("metrics",), timeout=args.timeout, curve=curve,
                        models=args.model) as sub, LiveDisplay(title) as display:
            if args.control:
                with Control(args.control, timeout=args.timeout, retries=1, curve=curve) as control:
                    display.update(_shown(control.stats(args.model)))
            deadline = time.monotonic() + args.duration if args.duration else None
            while deadline is None or time.monotonic() < deadline:
                _, m = sub.recv()
                if m.get("model") != args.model:  # a keyed service's totals
                    continue
                display.update(_shown(m))
                if record:
                    record.write(json.dumps(_strict_json(m), allow_nan=False) + "\n")
                    record.flush()
    except KeyboardInterrupt:
        pass
    except TimeoutError as e:  # names the endpoint that did not answer
        print(f"streammlp watch: {e}", file=sys.stderr)
        return 1
    finally:
        if record:
            record.close()
    return 0


def _shown(m: dict) -> dict:
    """A metrics message as the live display reads it: a keyed model's exponentially
    weighted figures stand in for the rolling ones it does not keep."""
    if m.get("model") is None:
        return m
    return {"samples_per_s": float("nan"), **m, "rolling_accuracy": m["ew_accuracy"],
            "rolling_loss": m["ew_loss"], "window": f"~{m.get('window', '?')}, exp. weighted"}


def dashboard(args: argparse.Namespace) -> int:
    """Serve a live dashboard of a running service in the browser."""
    Dashboard = _dashboard_class()
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop cleanly on SIGTERM too
    try:
        with Dashboard(args.publish, args.control or None, host=args.host, port=args.port,
                       token=args.token, curve=_curve(args)) as board:
            print(f"dashboard: {board.url} (service at {args.publish}); Ctrl-C to stop", flush=True)
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
    return 0


def _strict_json(value):
    """``value`` with NaN and infinities as None: strict JSON has no NaN (it is null there)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _strict_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strict_json(v) for v in value]
    return value


def feed(args: argparse.Namespace) -> int:
    """Stream a CSV or .npz file into a running service and confirm what it trained (or into a
    JetStream stream, --to, and confirm what it stored).

    The service's ``stats`` before and after tell how many samples it trained;
    its ``events`` name this feed's rejected messages (sent under the producer
    name ``feed-PID``). Exit status 0 only when every sample was trained.
    """
    if args.model_column:
        X, y, keys = read_samples(args.file, args.target, key=args.model_column)
    else:
        (X, y), keys = read_samples(args.file, args.target), None
    if args.to:
        if args.model or args.model_column:
            raise ValueError("--to stores a message under its --subject, whose last token is its "
                             "model: drop --model and --model-column")
        return _feed_stream(args, X, y)
    total = len(X) * args.loop
    curve = _curve(args)
    name = f"feed-{os.getpid()}"
    print(f"feeding {args.file}: {len(X):,} samples of {X.shape[1]} inputs to {args.ingest}"
          + (f", {args.loop} times" if args.loop > 1 else ""))
    with Control(args.control, timeout=args.timeout, retries=1, curve=curve) as control, \
            Subscriber(args.publish, topics=("events", "metrics"), timeout=args.timeout,
                       curve=curve) as events:
        before = control.stats()  # no service: TimeoutError here, before anything is sent
        events.recv()  # a metrics heartbeat: the subscription is live, no rejection will be missed
        rows_of: dict[int, tuple[int, int]] = {}  # seq -> (first row in the file, rows)
        with Producer(args.ingest, producer=name, timeout=args.timeout, curve=curve,
                      model=args.model) as producer:
            producer.wait_connected(args.timeout)
            for i, Xb, yb, key in _paced(X, y, keys, args):
                first = producer.seq + 1
                producer.send(Xb, yb, model=key)
                for seq in range(first, producer.seq + 1):  # several if a batch was split
                    rows_of[seq] = (i, len(Xb)) if seq == first == producer.seq else (i, 0)
        # Delivered; now wait until the service has trained or refused every row.
        rejected: dict[int, dict] = {}
        deadline, trained = time.monotonic() + args.timeout, -1
        while True:
            while events.socket.poll(0):
                topic, event = events.recv()
                if topic == "events" and event.get("producer") == name and event.get("seq") in rows_of:
                    rejected[event["seq"]] = event
            now_trained = control.stats()["samples"] - before["samples"]
            if now_trained > trained:
                trained, deadline = now_trained, time.monotonic() + args.timeout
            if trained + sum(rows_of[seq][1] for seq in rejected) >= total or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    return _feed_report(args.file, total, trained, rejected, rows_of)


def _feed_report(path: str, total: int, trained: int, rejected: dict[int, dict],
                 rows_of: dict[int, tuple[int, int]]) -> int:
    """Say what the service made of a feed; the exit status (0: every sample trained)."""
    if trained > total:  # another producer fed the service meanwhile
        print(f"the service trained {trained:,} samples meanwhile, more than the {total:,} sent: "
              "others fed it too, so this count cannot confirm this feed")
        return 0 if not rejected else 1
    print(f"trained {trained:,} of {total:,} samples ({trained / total:.0%}), as counted by the service")
    by_reason: dict[str, list[dict]] = {}
    for seq in sorted(rejected):
        by_reason.setdefault(rejected[seq]["reason"], []).append(rejected[seq])
    for reason, events in by_reason.items():
        rows = sum(rows_of[e["seq"]][1] for e in events)
        first, n = rows_of[events[0]["seq"]]
        print(f"rejected {len(events):,} message(s), {rows:,} samples, as {reason}: "
              f"{events[0]['error']} (first in samples {first + 1:,}-{first + n:,} of {path})",
              file=sys.stderr)
    missing = total - trained - sum(rows_of[seq][1] for seq in rejected)
    if missing > 0:
        print(f"{missing:,} samples neither trained nor reported rejected within the timeout"
              + (": nothing was trained; is --ingest the service's?" if trained == 0 else ""),
              file=sys.stderr)
    return 0 if trained == total else 1


def _paced(X: np.ndarray, y: np.ndarray, keys: np.ndarray | None, args: argparse.Namespace):
    """The file's messages, ``--loop`` times: ``(first row, X, y, model key)``, ``--batch`` rows
    at most and one key each (``--model-column``), paced to ``--rate``, with a progress line
    at most once a second."""
    total = len(X) * args.loop
    sent, start, shown = 0, time.monotonic(), 0.0
    for _ in range(args.loop):
        for i in range(0, len(X), args.batch):
            end = min(i + args.batch, len(X))
            for a, b in _runs(keys, i, end):
                yield a, X[a:b], y[a:b], None if keys is None else str(keys[a])
            sent += end - i
            if args.rate:
                time.sleep(max(0.0, start + sent / args.rate - time.monotonic()))
            if time.monotonic() - shown >= 1.0 or sent == total:
                shown = time.monotonic()
                print(f"sent {sent:>10,} / {total:,} ({sent / total:.0%})", flush=True)


def _runs(keys: np.ndarray | None, start: int, end: int) -> list[tuple[int, int]]:
    """Rows ``start:end`` cut where the key changes (one piece without keys)."""
    if keys is None:
        return [(start, end)]
    cuts = [start, *(np.flatnonzero(keys[start + 1:end] != keys[start:end - 1]) + start + 1), end]
    return list(zip(cuts[:-1], cuts[1:]))


def _feed_stream(args: argparse.Namespace, X: np.ndarray, y: np.ndarray) -> int:
    """``feed --to``: publish the file into a JetStream stream; the stream's last sequence."""
    producer = _stream_producer(args)
    print(f"feeding {args.file}: {len(X):,} samples of {X.shape[1]} inputs to {args.to} "
          f"{args.subject}" + (f", {args.loop} times" if args.loop > 1 else ""))
    with producer:
        for _, Xb, yb, _ in _paced(X, y, None, args):
            producer.send(Xb, yb)
        print(f"stored: the stream's last sequence is {producer.flush()}")
    return 0


def _stream_producer(args: argparse.Namespace):
    """A producer into the JetStream stream that stores ``--subject``, made if there is none."""
    from .jetstream import Connection, StreamProducer, stream_for

    if not args.subject:
        raise ValueError("--to needs --subject PREFIX.KEY, such as samples.sensor-17")
    producer = StreamProducer(Connection(args.to, args.nats_creds, args.nats_tls_ca), args.subject)
    try:
        name, made = producer.run(stream_for(producer.js, args.subject, args.stream, args.partitions))
    except BaseException:
        producer.close()
        raise
    if made:
        print(f"no stream stored {args.subject}: made stream {name} (subjects "
              f"{args.subject.split('.')[0]}.*, {args.partitions} partition(s))")
    return producer


def stream_create(args: argparse.Namespace) -> int:
    """Make a JetStream stream laid out for N trainers (--shard I/N each)."""
    from .jetstream import Connection, call, ensure_stream, layout

    made = call(Connection(args.url, args.nats_creds, args.nats_tls_ca), lambda js: ensure_stream(
        js, args.stream, args.partitions, args.subject_prefix, args.replicas))
    wanted = layout(args.partitions, args.subject_prefix)
    print(f"stream {args.stream} {'made' if made else 'exists already, with this layout'}: "
          f"subjects {wanted['subjects'][0]}, stored as {wanted['transform'][1]}; trainers: "
          f"streammlp serve --source {args.url} --stream {args.stream} --shard I/{args.partitions} "
          + (f"--subject-prefix {args.subject_prefix} " if args.subject_prefix != jetstream.PREFIX else "") +
          f"(I = 0..{args.partitions - 1})")
    return 0


def plot(args: argparse.Namespace) -> int:
    """Draw learning curves from a metrics log recorded by ``watch --jsonl``."""
    from .plot import learning_curve, read_jsonl

    try:
        learning_curve(read_jsonl(args.metrics), args.output, title=str(args.metrics),
                       drift_at=args.drift)
    except ValueError as e:
        raise ValueError(f"{args.metrics}: {e}") from None
    print(f"learning curve: {args.output}")
    return 0


def train(args: argparse.Namespace) -> int:
    """The seed program's job offline: train online through a file, then score a validation file."""
    X, y = read_samples(args.file, args.target, finite=True)
    layers = _layers(args.layers or f"{X.shape[1]},4,1")
    if layers[0] != X.shape[1]:
        raise ValueError(f"{args.file} has {X.shape[1]} input columns; --layers {args.layers} "
                         f"takes {layers[0]} (leave --layers out to take the file's)")
    # Everything that could fail after training is checked before it.
    if args.validate:
        Xv, yv = read_samples(args.validate, args.target, finite=True)
        if Xv.shape[1] != X.shape[1]:
            raise ValueError(f"{args.validate} has {Xv.shape[1]} input columns; {args.file} "
                             f"has {X.shape[1]}")
    if args.save and not os.path.isdir(os.path.dirname(os.path.abspath(args.save))):
        raise ValueError(f"--save {args.save}: there is no directory "
                         f"{os.path.dirname(os.path.abspath(args.save))}")
    if layers[-1] > 1:  # class labels: say so rather than truncate 1.7 to 1
        y = _labels(args.file, y)
        if args.validate:
            yv = _labels(args.validate, yv)
    net = MLP(layers, activation=args.activation, lr=args.lr, bias=args.bias, seed=args.seed)
    for epoch in range(1, args.epochs + 1):
        result = net.learn(X, y)
        print(f"epoch {epoch}: {result.n:,} samples, prequential accuracy {result.accuracy:.2%}, "
              f"loss {result.loss / result.n:.5f}")
    if args.validate:
        expected = (yv >= 0.5).astype(np.int64) if layers[-1] == 1 else yv
        correct = np.mean(net.predict_class(Xv) == expected)
        print(f"validation: {correct:.2%} correct on {len(Xv):,} samples of {args.validate}")
    if args.save:
        net.save(args.save)
        print(f"saved: {args.save}")
    return 0


def _labels(path: str, y: np.ndarray) -> np.ndarray:
    """Targets as integer class labels, or ``ValueError`` naming the first that is not one."""
    bad = y != np.round(y)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"{path}: target {y[i]} of sample {i + 1} is not a class label; a "
                         "network with several outputs takes labels 0, 1, 2, ...")
    return y.astype(np.int64)


def _layers(text: str) -> list[int]:
    try:
        layers = [int(n) for n in text.split(",")]
    except ValueError:
        layers = []
    if len(layers) < 2 or min(layers) < 1:
        raise ValueError(f"--layers {text}: expected two or more positive sizes, inputs first, "
                         "such as 3,4,1")
    return layers


def keygen(args: argparse.Namespace) -> int:
    """Make CurveZMQ key pairs (NAME.key public, NAME.key_secret secret) in a directory."""
    from .security import keygen as make

    for path in make(args.directory, args.names):
        print(path)
    d = args.directory
    if "server" in args.names:
        print(f"serve with --curve-secret {d}/server.key_secret and --allow-keys a directory "
              "holding the clients' .key files; clients use --curve-secret their .key_secret and "
              f"--curve-server-key {d}/server.key")
    else:
        print("each NAME.key_secret (mode 0600) stays with its owner; a client's NAME.key goes "
              "into the service's --allow-keys directory, the service's NAME.key to its clients "
              "(--curve-server-key)")
    return 0


def _dashboard_class():
    """``streammlp.dashboard.Dashboard``, imported only when asked for: it needs its extra."""
    try:
        from .dashboard import Dashboard
    except ImportError as e:
        raise ValueError(f"the dashboard needs its extra: pip install 'streammlp[dashboard]' ({e})")
    return Dashboard


def _curve(args: argparse.Namespace) -> tuple[str, str] | None:
    """The client-side CurveZMQ options, checked: both or neither."""
    if bool(args.curve_secret) != bool(args.curve_server_key):
        raise ValueError("CURVE needs both --curve-secret FILE and --curve-server-key FILE")
    return (args.curve_secret, args.curve_server_key) if args.curve_secret else None


def _client_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--curve-secret", default=None, help="CurveZMQ: this client's .key_secret file")
    p.add_argument("--curve-server-key", default=None, help="CurveZMQ: the service's .key file")


def _number(kind, low: float, inclusive: bool = True):
    """An argparse type: a finite ``kind`` (int or float) of at least (or above) ``low``."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not math.isfinite(value) or value < low or (not inclusive and value == low):
            bound = f"{'at least' if inclusive else 'above'} {low}"
            what = "a whole number" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"{text!r}: expected {what} {bound}")
        return value
    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


POSITIVE_INT, POSITIVE = _number(int, 1), _number(float, 0, inclusive=False)
NON_NEGATIVE_INT, NON_NEGATIVE = _number(int, 0), _number(float, 0)


def _command(commands, function, **kwargs) -> argparse.ArgumentParser:
    """A subcommand described by its function's docstring, every option's default shown."""
    first = function.__doc__.strip().splitlines()[0]
    p = commands.add_parser(function.__name__, help=first, description=function.__doc__,
                            formatter_class=_HelpFormatter, **kwargs)
    p.set_defaults(run=function)
    return p


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions kept as written; every option's default shown, unless it is none or a flag's."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help = action.help or ""
        if (action.default is None or action.default is argparse.SUPPRESS
                or isinstance(action.default, bool) or "default" in help):
            return help
        return f"{help} (default: %(default)s)"
def _nats_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nats-creds", default=None, help="NATS credentials file (.creds)")
    p.add_argument("--nats-tls-ca", default=None, help="CA certificate (PEM) of the NATS server")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streammlp", description="An online trainer for "
                                     "multilayer perceptrons: one gradient step per sample.")
    parser.add_argument("--version", action="version", version=f"streammlp {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("serve", help="run the trainer service (see streammlp serve --help)",
                        add_help=False)

    p = _command(commands, demo)
    p.add_argument("--task", choices=sorted(TASKS), default="waveforms", help="the stream to learn")
    p.add_argument("--samples", type=POSITIVE_INT, default=200_000, help="samples to stream")
    p.add_argument("--rate", type=NON_NEGATIVE, default=20_000, help="samples/s sent (0: no limit)")
    p.add_argument("--batch", type=POSITIVE_INT, default=256, help="samples per message")
    p.add_argument("--layers", default=None, help="units per layer, e.g. 32,64,4 (default: the task's)")
    p.add_argument("--lr", type=POSITIVE, default=None, help="learning rate (default: the task's)")
    p.add_argument("--drift", type=NON_NEGATIVE_INT, default=100_000,
                   help="sample at which the concept drifts")
    p.add_argument("--no-drift", dest="drift", action="store_const", const=None, help="no drift")
    p.add_argument("--window", type=POSITIVE_INT, default=2000, help="samples in the rolling window")
    p.add_argument("--seed", type=int, default=0, help="seed of the stream and the weights")
    p.add_argument("-o", "--output", default="learning-curve.png", help="PNG path, or - for none")
    p.add_argument("--dashboard", type=int, nargs="?", const=DASHBOARD_PORT, default=None,
                   metavar="PORT", help=f"also serve the live dashboard (port {DASHBOARD_PORT})")

    p = _command(commands, watch)
    p.add_argument("--publish", default=protocol.PUBLISH_ENDPOINT, help="the service's publish endpoint")
    p.add_argument("--control", default=None,
                   help="the service's control endpoint, to show the current figures at once")
    p.add_argument("--jsonl", default=None, help="append every metrics message to this file")
    p.add_argument("--duration", type=POSITIVE, default=None, help="stop after this many seconds")
    p.add_argument("--timeout", type=POSITIVE, default=RECV_TIMEOUT,
                   help="give up after this many seconds without a message")
    p.add_argument("--model", default=None, help="one model of a keyed service")
    _client_options(p)

    p = _command(commands, dashboard)
    p.add_argument("--publish", default=protocol.PUBLISH_ENDPOINT, help="the service's publish endpoint")
    p.add_argument("--control", default=protocol.CONTROL_ENDPOINT,
                   help="for the late-join snapshot and the model list ('' for none)")
    p.add_argument("--host", default="127.0.0.1", help="address to serve the page on "
                   "(anything but loopback needs --token)")
    p.add_argument("--port", type=NON_NEGATIVE_INT, default=DASHBOARD_PORT, help="0: any free port")
    p.add_argument("--token", default=os.environ.get("STREAMMLP_DASHBOARD_TOKEN"),
                   help="a secret the page asks for; needed off loopback "
                   "(default: $STREAMMLP_DASHBOARD_TOKEN)")
    _client_options(p)

    p = _command(commands, feed)
    p.add_argument("file", help="CSV (a header, the target in --target) or .npz (arrays X and y)")
    p.add_argument("--ingest", default=protocol.INGEST_ENDPOINT, help="the service's ingest endpoint")
    p.add_argument("--control", default=protocol.CONTROL_ENDPOINT,
                   help="the service's control endpoint (to count what it trained)")
    p.add_argument("--publish", default=protocol.PUBLISH_ENDPOINT,
                   help="the service's publish endpoint (to hear about rejected messages)")
    p.add_argument("--target", default="output", help="name of the target column")
    p.add_argument("--batch", type=POSITIVE_INT, default=256, help="samples per message")
    p.add_argument("--rate", type=NON_NEGATIVE, default=0, help="samples/s (0: no limit)")
    p.add_argument("--loop", type=POSITIVE_INT, default=1, help="send the file this many times")
    p.add_argument("--timeout", type=POSITIVE, default=CONFIRM_TIMEOUT,
                   help="seconds to wait for the service: an answer, a send, the last sample trained")
    keys = p.add_mutually_exclusive_group()
    keys.add_argument("--model", default=None, help="a keyed service's model to train")
    keys.add_argument("--model-column", default=None,
                      help="a CSV column naming each row's model (a keyed service)")
    p.add_argument("--to", default=None, help="nats://HOST:PORT: publish into JetStream instead")
    p.add_argument("--subject", default=None, help="with --to: the subject, PREFIX.KEY")
    p.add_argument("--stream", default="SAMPLES",
                   help="with --to: the stream to make if none stores the subject")
    p.add_argument("--partitions", type=POSITIVE_INT, default=1,
                   help="... laid out for this many trainers")
    _client_options(p)
    _nats_options(p)

    p = commands.add_parser("stream", help="JetStream streams to train from",
                            description="JetStream streams to train from (streammlp serve --source).")
    actions = p.add_subparsers(dest="action", required=True, help="what to do with a stream")
    p = actions.add_parser("create", help=stream_create.__doc__, description=stream_create.__doc__,
                           formatter_class=_HelpFormatter)
    p.add_argument("url", help="nats://HOST:PORT")
    p.add_argument("--stream", required=True, help="the stream's name")
    p.add_argument("--partitions", type=POSITIVE_INT, required=True,
                   help="N: trainers --shard 0/N .. N-1/N")
    p.add_argument("--subject-prefix", default=jetstream.PREFIX, help="the subjects' first token")
    p.add_argument("--replicas", type=POSITIVE_INT, default=1, help="R: copies in a cluster (3 for R3)")
    _nats_options(p)
    p.set_defaults(run=stream_create)

    p = _command(commands, plot)
    p.add_argument("metrics", help="a log written by streammlp watch --jsonl")
    p.add_argument("-o", "--output", default="learning-curve.png", help="PNG path")
    p.add_argument("--drift", type=NON_NEGATIVE_INT, default=None, help="mark the drift at this sample")

    p = _command(commands, train)
    p.add_argument("file", help="CSV (a header, the target in --target) or .npz (arrays X and y)")
    p.add_argument("--validate", default=None, help="score the trained network on this file")
    p.add_argument("--target", default="output", help="name of the target column")
    p.add_argument("--layers", default=None,
                   help="units per layer, inputs first (default: the file's inputs,4,1)")
    p.add_argument("--activation", choices=list(ACTIVATIONS), default="logistic",
                   help="hidden activation")
    p.add_argument("--lr", type=POSITIVE, default=1.0, help="learning rate")
    p.add_argument("--no-bias", dest="bias", action="store_false", help="no bias units (the seed's)")
    p.add_argument("--epochs", type=POSITIVE_INT, default=1, help="passes through the file")
    p.add_argument("--seed", type=int, default=None, help="seed of the first weights")
    p.add_argument("--save", default=None, help="write the trained network here (.npz)")

    p = _command(commands, keygen)
    p.add_argument("directory", help="where the key files go")
    p.add_argument("names", nargs="*", default=["server", "client"], help="one key pair per name")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"]:  # the service parses its own options
        from service.serve import main as serve

        return serve(argv[1:])
    args = _parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, OSError, TimeoutError, ImportError) as e:  # OSError: ConnectionError too
        print(f"streammlp {args.command}: {e}", file=sys.stderr)
        return 2
    except MemoryError as e:
        print(f"streammlp {args.command}: not enough memory: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
