"""The ``streammlp`` command line."""

from __future__ import annotations

import argparse
import sys
import time

from . import signals
from .network import MLP


def _layers(text: str) -> list[int]:
    try:
        return [int(n) for n in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated sizes such as 3,4,1")


def demo(args: argparse.Namespace) -> int:
    """Train online on a built-in waveform stream, showing prequential progress."""
    net = MLP(args.layers, activation=args.activation, output="softmax", loss="cross_entropy",
              lr=args.lr, init="glorot", seed=args.seed)
    print(f"streammlp demo: {net} on {args.samples:,} waveform windows"
          + (f", labels permuted at {args.drift:,}" if args.drift is not None else ""))
    start = time.perf_counter()
    for X, y in signals.waveforms(args.samples, window=args.layers[0], batch=args.batch,
                                  noise=args.noise, drift_at=args.drift, seed=args.seed):
        result = net.learn(X, y)
        rate = net.samples / (time.perf_counter() - start)
        print(f"{net.samples:>9,} samples  {rate:>11,.0f}/s  accuracy {net.correct_total / net.samples:6.1%}"
              f"  last batch {result.accuracy:6.1%}  loss {result.loss / result.n:.3f}", flush=True)
    print(f"prequential accuracy {net.correct_total / net.samples:.1%} over {net.samples:,} samples")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="streammlp", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("demo", help=demo.__doc__)
    p.add_argument("--samples", type=int, default=200_000)
    p.add_argument("--batch", type=int, default=10_000)
    p.add_argument("--layers", type=_layers, default=[32, 64, 4])
    p.add_argument("--activation", default="tanh")
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--noise", type=float, default=0.2)
    p.add_argument("--drift", type=int, default=None, help="sample at which labels are permuted")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=demo)
    commands.add_parser("serve", help="run the trainer service (streammlp serve --help)", add_help=False)
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"]:  # the service parses its own options
        from service.trainer import main as serve
        return serve(argv[1:])
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
