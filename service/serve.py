"""``streammlp serve``: the options, a fresh or resumed trainer, and the process around it.

The loop itself is ``service.trainer.Trainer``; this module turns the command
line into one (``build``), and runs it (``main``): glibc's allocator told to
keep freed memory, SIGINT/SIGTERM handled, one ready line with the endpoints.
"""

from __future__ import annotations

import argparse
import ctypes
import inspect
import logging
import os
import signal
import sys

from streammlp import __version__, checkpoint, jetstream
from streammlp.fleet import Fleet, RaceFleet
from streammlp.network import ACTIVATIONS, DTYPES, INITS, LOSSES, MLP, OUTPUTS, read
from streammlp.race import SHARED, Race

from .config import FIELDS, TrainerConfig, option
from .trainer import Trainer, log

# The network options (--lr, --no-bias, --activation, --output, --loss, --init) have no
# argparse defaults, so that a race can tell those given from those left out; a network left
# without one takes MLP's, but for the seed's learning rate.
NET_OPTIONS = ("lr", "bias", "activation", "output", "loss", "init")
LR = 1.0  # the seed's (MLP's own default is 0.1)
MLP_DEFAULTS = {name: p.default for name, p in inspect.signature(MLP).parameters.items()}
MAX_MODELS = 100_000  # models a keyed service holds before it refuses new keys
KEEP_FREED_BYTES = 64 << 20  # freed memory glibc may keep for reuse (see keep_freed_memory)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="streammlp serve", description="Run the online trainer service.")
    p.add_argument("--version", action="version", version=f"streammlp {__version__}")
    p.add_argument("--layers", default="3,4,1", help="units per layer, inputs first (default %(default)s)")
    # The network's options (NET_OPTIONS): absent unless given. A race takes those given.
    unless_given, grid = dict(default=argparse.SUPPRESS), "with --race, Race.grid's"
    p.add_argument("--lr", type=float, **unless_given,
                   help=f"learning rate (default {LR}; refused with --race, which trains its "
                        "grid's)")
    p.add_argument("--no-bias", dest="bias", action="store_false", **unless_given,
                   help="no bias units (the seed's)")
    p.add_argument("--activation", choices=list(ACTIVATIONS), **unless_given,
                   help=f"hidden activation (default {MLP_DEFAULTS['activation']})")
    p.add_argument("--output", choices=list(OUTPUTS), **unless_given,
                   help=f"output activation (default {MLP_DEFAULTS['output']}; {grid})")
    p.add_argument("--loss", choices=list(LOSSES), **unless_given,
                   help="sse with logistic or identity outputs, cross_entropy with softmax or "
                        f"logistic (default {MLP_DEFAULTS['loss']}; {grid})")
    p.add_argument("--init", choices=INITS, **unless_given,
                   help=f"first weights: uniform in [-1, 1] or glorot (default "
                        f"{MLP_DEFAULTS['init']}; {grid})")
    p.add_argument("--seed", type=int, default=None, help="seed of the first weights (default: random)")
    p.add_argument("--dtype", default="float64", choices=DTYPES,
                   help="the parameters' float type (default %(default)s)")
    p.add_argument("--scale", default=None, choices=["standard"],
                   help="standardise each input online (running mean and variance)")
    p.add_argument("--race", action="store_true",
                   help="train a grid of learning rates x hidden widths on every sample and "
                        "serve the member with the best recent figures (--layers gives inputs,"
                        "outputs; --output identity --loss sse: a regression race)")
    d = TrainerConfig  # every default below is the config's
    p.add_argument("--ingest", default=d.ingest, help="PULL endpoint samples arrive on (default %(default)s)")
    p.add_argument("--publish", default=d.publish,
                   help="PUB endpoint weights, metrics and events go out on (default %(default)s)")
    p.add_argument("--control", default=d.control, help="ROUTER endpoint of requests (default %(default)s)")
    p.add_argument("--ingest-acked", default=d.ingest_acked,
                   help="also take acknowledged samples here (ROUTER; needs --checkpoint)")
    p.add_argument("--durable-every-ms", type=float, default=d.durable_every_ms,
                   help="with unacknowledged samples, checkpoint at least this often (default %(default)s)")
    p.add_argument("--durable-every-messages", type=int, default=d.durable_every_messages,
                   help="... or after this many acknowledged-ingest messages (default %(default)s)")
    p.add_argument("--curve-secret", default=d.curve_secret,
                   help="CurveZMQ: the service's .key_secret file (turns on CURVE on every socket)")
    p.add_argument("--allow-keys", default=d.allow_keys,
                   help="CurveZMQ: directory of the public .key files of allowed clients")
    p.add_argument("--refused-log-every-s", type=float, default=d.refused_log_every_s,
                   help="with CURVE, log refused handshakes at most once per socket this often, "
                        "with their count (default %(default)s)")
    p.add_argument("--publish-every-samples", type=int, default=d.publish_every_samples,
                   help="publish after this many samples (default %(default)s)")
    p.add_argument("--publish-every-ms", type=float, default=d.publish_every_ms,
                   help="... or this often (default %(default)s)")
    p.add_argument("--window", type=int, default=d.window,
                   help="samples in the rolling metrics window (default %(default)s)")
    p.add_argument("--checkpoint", default=d.checkpoint, help="file to save the model to, atomically")
    p.add_argument("--checkpoint-every-s", type=float, default=d.checkpoint_every_s,
                   help="checkpoint this often (default %(default)s)")
    p.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    p.add_argument("--prometheus-port", type=int, default=d.prometheus_port,
                   help="serve Prometheus metrics on 127.0.0.1:PORT (0: a free port)")
    p.add_argument("--keyed", action="store_true",
                   help="train one model per message key ('model'), each from the options' "
                        "template and the seed model_seed(--seed, key)")
    p.add_argument("--max-models", type=int, default=MAX_MODELS,
                   help="with --keyed, refuse new keys beyond this many models (default %(default)s)")
    g = p.add_argument_group("reading a durable log instead of the ingest socket (needs --checkpoint)")
    g.add_argument("--source", default=None,
                   help="nats://HOST:PORT (several separated by commas): train from a JetStream "
                        "stream, exactly once; the checkpoint holds the last sequence applied")
    g.add_argument("--stream", default=None, help="the JetStream stream to read")
    g.add_argument("--subject", default=None, help="read only the subjects matching this filter")
    g.add_argument("--from", dest="start", default="first",
                   help="without a checkpoint, start at the stream's first message, at new ones, "
                        "or at a sequence: first|new|SEQ (default %(default)s)")
    g.add_argument("--shard", default=None,
                   help="I/N: read only shard I of a stream made by 'streammlp stream create "
                        "--partitions N' (subjects PREFIX.I.*)")
    g.add_argument("--subject-prefix", default=jetstream.PREFIX,
                   help="the first token of the stream's subjects (default %(default)s)")
    g.add_argument("--publish-kv", default=None, metavar="BUCKET",
                   help="also keep every model's newest weights (the weights message) in this "
                        "JetStream key-value bucket, under the model's key ('default' unkeyed)")
    g.add_argument("--nats-creds", default=None, help="NATS credentials file (.creds)")
    g.add_argument("--nats-tls-ca", default=None, help="CA certificate (PEM) of the NATS server")
    g.add_argument("--nats-tls-cert", default=None, help="client certificate (PEM) for NATS TLS")
    g.add_argument("--nats-tls-key", default=None, help="client key (PEM) for NATS TLS")
    p.add_argument("--delay-ms", type=float, default=d.delay_ms, help=argparse.SUPPRESS)  # tests only
    return p.parse_args(argv)


def fresh_model(args: argparse.Namespace) -> MLP | Race | Fleet | RaceFleet:
    """The fresh model the options describe: a network, a race, or a fleet of either."""
    try:
        layers = [int(n) for n in args.layers.split(",")]
    except ValueError:
        raise ValueError(f"--layers {args.layers!r}: expected comma-separated sizes such as 3,4,1")
    given = {name: getattr(args, name) for name in NET_OPTIONS if hasattr(args, name)}
    if args.race and "lr" in given:
        raise ValueError(f"--lr {args.lr} with --race: the race trains every learning rate of its "
                         "grid (Race.grid); drop --lr")

    def race(seed: int | None) -> Race:
        return Race.grid(layers[0], layers[-1], seed=seed, dtype=args.dtype,
                         scale=args.scale or "standard", **given)

    def mlp(seed: int | None) -> MLP:
        return MLP(layers, **{"lr": LR, **given}, seed=seed, dtype=args.dtype, scale=args.scale)

    if args.seed is not None and args.seed < 0:
        raise ValueError(f"--seed {args.seed}: expected 0 or more")
    if args.max_models < 1:
        raise ValueError(f"--max-models {args.max_models}: expected a positive number")
    if args.keyed:  # a model per key, each from the seed model_seed(--seed, key)
        fleet = dict(seed=args.seed, window=args.window, max_models=args.max_models)
        return RaceFleet(race, **fleet) if args.race else Fleet(mlp(None), **fleet)
    return race(args.seed) if args.race else mlp(args.seed)


def build(args: argparse.Namespace) -> Trainer:
    """The trainer the options describe; a fresh model, or the checkpoint's with --resume."""
    net = fresh_model(args)
    extra = {}
    if args.resume and not args.checkpoint:
        raise ValueError("--resume needs --checkpoint PATH")
    if args.resume and not os.path.exists(args.checkpoint):
        # A crash before the first checkpoint: nothing was durable, so nothing is lost.
        log.info("streammlp serve: --resume: no checkpoint at %s yet, starting afresh", args.checkpoint)
    elif args.resume:
        saved, extra = _read(args.checkpoint, net)
        there, here = _comparable(saved), _comparable(net)
        if there != here:
            raise ValueError(f"checkpoint {args.checkpoint} does not match the options: it holds "
                             f"{there}, the options ask for {here}")
        net = saved
    config = TrainerConfig(**{name: getattr(args, name) for name in FIELDS})
    source = _source(args)
    position = _position(args, source, extra) if source else None
    return Trainer(net, config, rejected=extra.get("rejected"), producers=extra.get("producers"),
                   source=source, position=position, drift=extra.get("drift"))


def _source(args: argparse.Namespace):
    """The source the options name (``--source``), or None for the ingest socket."""
    if args.source is None:
        for name in ("stream", "subject", "shard", "publish_kv"):
            if getattr(args, name) is not None:
                raise ValueError(f"--{name.replace('_', '-')} goes with --source nats://HOST:PORT; "
                                 "add it")
        return None
    if not args.checkpoint:
        raise ValueError("--source needs --checkpoint PATH: it records the last stream sequence "
                         "applied, so that a restart trains every message exactly once")
    for name in ("ingest", "ingest_acked"):
        if getattr(args, name) != getattr(TrainerConfig, name):
            raise ValueError(f"{option(name)} and --source: the stream is the only input; drop "
                             f"{option(name)}")
    if not args.stream:
        raise ValueError("--source needs --stream NAME")
    from .sources.jetstream import JetStreamConfig, JetStreamSource

    connection = jetstream.Connection(args.source, args.nats_creds, args.nats_tls_ca,
                                      args.nats_tls_cert, args.nats_tls_key)
    return JetStreamSource(JetStreamConfig(connection, args.stream, args.subject, args.start,
                                           JetStreamConfig.parse_shard(args.shard),
                                           args.subject_prefix, args.publish_kv))


def _position(args: argparse.Namespace, source, extra: dict) -> int | None:
    """The last log position the checkpoint applied, after checking it is this source's."""
    if not args.resume:
        try:  # never train the stream again over a checkpoint that has applied some of it
            saved = checkpoint.read(args.checkpoint).get("extra", {}).get("source")
        except (OSError, ValueError, KeyError):
            saved = None
        if saved:
            raise ValueError(f"checkpoint {args.checkpoint} has applied stream {saved['stream']} "
                             f"through sequence {saved['applied']}: pass --resume to continue "
                             "after it, or remove the file to start over")
        return None
    saved = extra.get("source")
    if saved is None:
        return None  # a checkpoint of the ingest socket, or none yet: --from says where
    there = {k: v for k, v in saved.items() if k != "applied"}
    if there != source.identity:
        raise ValueError(f"checkpoint {args.checkpoint} holds the position of {there}; these "
                         f"options read {source.identity}. Resume with the same --stream and "
                         "--subject/--shard, or start a new checkpoint")
    log.info("streammlp serve: resuming after stream sequence %s (the checkpoint's)", saved["applied"])
    return saved["applied"]


def keep_freed_memory() -> None:
    """Have glibc keep freed memory for reuse rather than give it back to the OS at once.

    Every drain allocates and frees buffers of megabytes (frames, the joined
    payloads, the rows). By default glibc returns them to the OS and the next
    drain faults them in again page by page: 875k page faults, a fifth of the
    service's time, in a run of 1024-row messages at 16-32-1; 48k with this.
    The cost: up to ``KEEP_FREED_BYTES`` stays mapped after a burst. Other C
    libraries keep their own policy.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc
        return
    libc.mallopt(M_MMAP_THRESHOLD, 32 << 20)  # blocks below this come from the reusable heap
    libc.mallopt(M_TRIM_THRESHOLD, KEEP_FREED_BYTES)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    args = parse_args(argv)
    keep_freed_memory()
    try:
        trainer = build(args)
    except (ValueError, OSError, ImportError) as e:  # OSError: the Prometheus port taken, say
        log.error("streammlp serve: %s", e)
        return 2
    except MemoryError as e:
        log.error("streammlp serve: not enough memory for this model (--layers %s): %s",
                  args.layers, e)
        return 2

    def stop(signum, frame):
        trainer.stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    e = trainer.endpoints
    source = trainer.source
    # One line at start: the endpoints (as bound, with the port the OS chose) and the model.
    print("streammlp serve: ready "
          + (f"source={source.config.connection.url} stream={source.config.stream}" if source
             else f"ingest={e['ingest']}")
          + f" publish={e['publish']} "
          f"control={e['control']}" + (f" acked={e['acked']}" if "acked" in e else "")
          + f" version={trainer.version} model={trainer.models.model!r}"
          + (" security=curve" if trainer.auth else " security=none(loopback only)")
          + (f" prometheus={trainer.prometheus.url}" if trainer.prometheus else ""), flush=True)
    trainer.run()
    if trainer.save_error:  # the final checkpoint too: what was trained since the last is lost
        log.error("streammlp serve: stopped at version %d, but the last checkpoint failed: %s",
                  trainer.version, trainer.save_error)
        return 1
    log.info("streammlp serve: stopped at version %d", trainer.version)
    return 0


def _read(path: str, model):
    """The model of the checkpoint at ``path`` (of ``model``'s kind, fleets included) and the
    extra saved with it; ``ValueError`` if the file is not one."""
    if not isinstance(model, (Fleet, RaceFleet)):
        return read(path)
    try:
        state = checkpoint.read(path)
        if isinstance(model, Fleet):
            saved = Fleet.from_state(state, max_models=model.max_models)
        else:
            saved = RaceFleet.from_state(state, model.make_race, max_models=model.max_models)
    except (OSError, ValueError, KeyError, IndexError, TypeError) as e:
        raise ValueError(f"{path} is not a checkpoint of a keyed service with these options "
                         f"({type(e).__name__}: {e})") from e
    return saved, state.get("extra", {})


def _comparable(model) -> dict:
    """A model's kind and spec without what only sets its first weights (seed, init). A
    race's: what its members share (the options it was served with) and its inputs and
    outputs, not its grid, which is the checkpoint's to keep: a checkpoint written under
    another version's default grid resumes with its own members."""
    def strip(spec: dict) -> dict:
        return {k: v for k, v in spec.items() if k not in ("seed", "init")}
    if isinstance(model, Fleet):
        return {"keyed": strip(model.spec)}
    if isinstance(model, RaceFleet):  # its races, all alike (the template if it has none)
        return {"keyed": _comparable(model.races[0] if model.races else model.template)}
    if isinstance(model, Race):  # what every member must share (race.SHARED)
        first = model.members[0]
        return {"race": {name: getattr(first, name) for name in SHARED}, "window": model.window}
    return strip(model.spec())
