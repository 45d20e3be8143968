"""The ``streammlp`` command: demo, serve, watch, feed, plot and train."""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time

import numpy as np

from . import protocol, signals
from .client import Control, Producer, Subscriber
from .display import LiveDisplay
from .files import read_samples
from .network import MLP

RECV_TIMEOUT = 10.0  # seconds without a metrics message before demo/watch give up

# Built-in tasks for the demo: stream, model options and the chance level.
TASKS = {
    "waveforms": dict(stream=signals.waveforms, layers="32,64,4", activation="tanh", lr=0.01,
                      classes=4, softmax=True),
    "bands": dict(stream=signals.bands, layers="64,64,4", activation="relu", lr=0.01,
                  classes=4, softmax=True),
    "points": dict(stream=signals.points, layers="3,4,1", activation="logistic", lr=1.0,
                   classes=2, softmax=False),
}


def _stream(producer: Producer, batches, rate: float, stop: threading.Event) -> None:
    """Send ``batches`` paced to ``rate`` samples/s (0: as fast as the service takes them)."""
    sent, start = 0, time.monotonic()
    for X, y in batches:
        if stop.is_set():
            return
        producer.send(X, y)
        sent += len(X)
        if rate:
            time.sleep(max(0.0, start + sent / rate - time.monotonic()))


def demo(args: argparse.Namespace) -> int:
    """Start a service, stream a built-in signal task into it and watch it learn live."""
    from service.process import ServiceProcess

    task = TASKS[args.task]
    if args.drift is not None and args.drift >= args.samples:
        args.drift = None  # past the end of the stream: no drift to show
    layers = args.layers or task["layers"]
    serve = ["--layers", layers, "--activation", task["activation"], "--lr", str(args.lr or task["lr"]),
             "--init", "glorot", "--scale", "standard", "--seed", str(args.seed),
             "--publish-every-ms", "100",
             "--window", str(args.window)]
    if task["softmax"]:
        serve += ["--output", "softmax", "--loss", "cross_entropy"]
    window = int(layers.split(",")[0])
    batches = task["stream"](args.samples, batch=args.batch, drift_at=args.drift, seed=args.seed,
                             **({} if args.task == "points" else {"window": window}))
    drift = f", drift at {args.drift:,}" if args.drift is not None else ""
    title = f"streammlp demo: {args.task} ({layers}), {args.samples:,} samples{drift}"
    history: list[dict] = []
    stop = threading.Event()
    with ServiceProcess(*serve) as service, \
            Subscriber(service.publish, topics=("metrics",), timeout=RECV_TIMEOUT) as sub, \
            Producer(service.ingest) as producer, LiveDisplay(title, total=args.samples) as display:
        feeder = threading.Thread(target=_stream, args=(producer, batches, args.rate, stop), daemon=True)
        feeder.start()
        try:
            while not history or history[-1]["samples"] < args.samples:
                _, m = sub.recv()
                history.append(m)
                display.update(m)
        finally:
            stop.set()
            feeder.join()
    final = history[-1]
    seconds = final["ts"] - history[0]["ts"]
    print(f"done: {final['samples']:,} samples in {seconds:.1f} s; prequential accuracy "
          f"{final['accuracy']:.1%}, loss {final['loss']:.4f}; rejected {sum(final['rejected'].values())}")
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


def watch(args: argparse.Namespace) -> int:
    """Show the live metrics of a running service."""
    record = open(args.jsonl, "a") if args.jsonl else None
    try:
        curve = _curve(args)
        with Subscriber(args.publish, topics=("metrics",), timeout=args.timeout, curve=curve) as sub, \
                LiveDisplay(f"streammlp watch: {args.publish}") as display:
            if args.control:
                with Control(args.control, curve=curve) as control:
                    display.update(control.stats())
            deadline = time.monotonic() + args.duration if args.duration else None
            while deadline is None or time.monotonic() < deadline:
                _, m = sub.recv()
                display.update(m)
                if record:
                    record.write(json.dumps(m) + "\n")
                    record.flush()
    except KeyboardInterrupt:
        pass
    except TimeoutError:
        print(f"no metrics from {args.publish} within {args.timeout} s; is the service running?",
              file=sys.stderr)
        return 1
    finally:
        if record:
            record.close()
    return 0


def feed(args: argparse.Namespace) -> int:
    """Stream a CSV or .npz file into a running service."""
    X, y = read_samples(args.file, args.target)
    total = len(X) * (args.loop or 1)
    print(f"feeding {args.file}: {len(X):,} samples of {X.shape[1]} inputs to {args.ingest}"
          + (f", {args.loop} times" if args.loop > 1 else ""))
    with Producer(args.ingest, timeout=args.timeout, curve=_curve(args)) as producer:
        sent, start, shown = 0, time.monotonic(), 0.0
        for _ in range(args.loop or 1):
            for i in range(0, len(X), args.batch):
                producer.send(X[i:i + args.batch], y[i:i + args.batch])
                sent += len(X[i:i + args.batch])
                if args.rate:
                    time.sleep(max(0.0, start + sent / args.rate - time.monotonic()))
                if time.monotonic() - shown >= 1.0 or sent == total:
                    shown = time.monotonic()
                    print(f"sent {sent:>10,} / {total:,} ({sent / total:.0%})", flush=True)
    return 0


def plot(args: argparse.Namespace) -> int:
    """Draw learning curves from a metrics log recorded by ``watch --jsonl``."""
    from .plot import learning_curve, read_jsonl

    learning_curve(read_jsonl(args.metrics), args.output, title=str(args.metrics),
                   drift_at=args.drift)
    print(f"learning curve: {args.output}")
    return 0


def train(args: argparse.Namespace) -> int:
    """The seed program's job offline: train online through a file, then score a validation file."""
    X, y = read_samples(args.file, args.target)
    layers = [int(n) for n in args.layers.split(",")]
    net = MLP(layers, activation=args.activation, lr=args.lr, bias=args.bias, seed=args.seed)
    if layers[-1] > 1:
        y = y.astype(np.int64)
    for epoch in range(1, args.epochs + 1):
        result = net.learn(X, y)
        print(f"epoch {epoch}: {result.n:,} samples, prequential accuracy {result.accuracy:.2%}, "
              f"loss {result.loss / result.n:.5f}")
    if args.validate:
        Xv, yv = read_samples(args.validate, args.target)
        expected = (yv >= 0.5).astype(np.int64) if layers[-1] == 1 else yv.astype(np.int64)
        correct = np.mean(net.predict_class(Xv) == expected)
        print(f"validation: {correct:.2%} correct on {len(Xv):,} samples of {args.validate}")
    if args.save:
        net.save(args.save)
    return 0


def keygen(args: argparse.Namespace) -> int:
    """Make CurveZMQ key pairs (NAME.key public, NAME.key_secret secret) in a directory."""
    from .security import keygen as make

    for path in make(args.directory, args.names):
        print(path)
    print(f"serve with --curve-secret {args.directory}/{args.names[0]}.key_secret and --allow-keys "
          "a directory holding the clients' .key files; clients use --curve-secret their "
          f".key_secret and --curve-server-key {args.directory}/{args.names[0]}.key")
    return 0


def _curve(args: argparse.Namespace) -> tuple[str, str] | None:
    """The client-side CurveZMQ options, checked: both or neither."""
    if bool(args.curve_secret) != bool(args.curve_server_key):
        raise ValueError("CURVE needs both --curve-secret FILE and --curve-server-key FILE")
    return (args.curve_secret, args.curve_server_key) if args.curve_secret else None


def _client_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--curve-secret", default=None, help="CurveZMQ: this client's .key_secret file")
    p.add_argument("--curve-server-key", default=None, help="CurveZMQ: the service's .key file")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streammlp", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run the trainer service (see streammlp serve --help)",
                        add_help=False)

    p = commands.add_parser("demo", help=demo.__doc__)
    p.add_argument("--task", choices=sorted(TASKS), default="waveforms")
    p.add_argument("--samples", type=int, default=200_000)
    p.add_argument("--rate", type=float, default=20_000, help="samples/s sent (0: no limit)")
    p.add_argument("--batch", type=int, default=256, help="samples per message")
    p.add_argument("--layers", default=None, help="e.g. 32,64,4 (default: the task's)")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: the task's)")
    p.add_argument("--drift", type=int, default=100_000, help="sample at which the concept drifts")
    p.add_argument("--no-drift", dest="drift", action="store_const", const=None)
    p.add_argument("--window", type=int, default=2000, help="samples in the rolling window")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--output", default="learning-curve.png", help="PNG path, or - for none")
    p.set_defaults(run=demo)

    p = commands.add_parser("watch", help=watch.__doc__)
    p.add_argument("--publish", default=protocol.PUBLISH_ENDPOINT)
    p.add_argument("--control", default=None, help="also ask for the current figures at once")
    p.add_argument("--jsonl", default=None, help="append every metrics message to this file")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--timeout", type=float, default=RECV_TIMEOUT)
    _client_options(p)
    p.set_defaults(run=watch)

    p = commands.add_parser("feed", help=feed.__doc__)
    p.add_argument("file")
    p.add_argument("--ingest", default=protocol.INGEST_ENDPOINT)
    p.add_argument("--target", default="output", help="name of the target column")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--rate", type=float, default=0, help="samples/s (0: no limit)")
    p.add_argument("--loop", type=int, default=1, help="send the file this many times")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds a send may block")
    _client_options(p)
    p.set_defaults(run=feed)

    p = commands.add_parser("plot", help=plot.__doc__)
    p.add_argument("metrics")
    p.add_argument("-o", "--output", default="learning-curve.png")
    p.add_argument("--drift", type=int, default=None)
    p.set_defaults(run=plot)

    p = commands.add_parser("train", help=train.__doc__)
    p.add_argument("file")
    p.add_argument("--validate", default=None)
    p.add_argument("--target", default="output")
    p.add_argument("--layers", default="3,4,1")
    p.add_argument("--activation", default="logistic")
    p.add_argument("--lr", type=float, default=1.0)
    p.add_argument("--no-bias", dest="bias", action="store_false")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--save", default=None, help="write the trained network here (.npz)")
    p.set_defaults(run=train)

    p = commands.add_parser("keygen", help=keygen.__doc__)
    p.add_argument("directory")
    p.add_argument("names", nargs="*", default=["server", "client"],
                   help="one key pair per name (default: server client)")
    p.set_defaults(run=keygen)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"]:  # the service parses its own options
        from service.serve import main as serve

        return serve(argv[1:])
    args = _parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, OSError, TimeoutError) as e:
        print(f"streammlp {args.command}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
