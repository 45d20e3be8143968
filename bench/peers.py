"""streammlp beside other online learners: speed of per-sample SGD, and prequential accuracy.

**Speed.** For the nets 3-4-1, 16-32-1, 64-128-10 and 256-512-10, every peer
makes one gradient step per sample, in order, on the same stream (inputs
uniform in [-1, 1]; a 0/1 target for one output, a class label for ten),
with logistic hidden and output units and lr 0.1 where the peer allows it.
It prints samples/s (median and best of ``--repeats`` timings, each sized to
take about 0.3 s) and the ratio streammlp/peer, all measured in this run:

- ``streammlp``: one ``MLP.learn`` call on the whole stream (the Numba kernel loops);
- ``streammlp 1 row/call``: ``MLP.learn`` called once per row, checks and all;
- ``streammlp learn_one``: the River adapter's ``learn_one`` on dicts (one
  output: ``RiverMLPRegressor``; ten: ``RiverMLPClassifier``);
- ``numpy``: ``streammlp.reference.learn``, a Python loop over samples (the seed's style);
- ``river``: ``river.neural_net.MLPRegressor.learn_one`` (River <= 0.25; later
  versions removed ``neural_net``), ``SGD(lr / 2)``: River's squared loss is
  ``(y - p)²``, twice ours;
- ``sklearn``: ``MLPRegressor`` (one output) / ``MLPClassifier`` (ten)
  ``.partial_fit`` on one row at a time; ``solver="sgd"``, no momentum, no L2;
- ``torch``: per-sample forward, backward and ``SGD.step`` (one thread), when
  torch is importable;
- ``vw``: Vowpal Wabbit ``--nn H --sgd``, one example at a time, pre-parsed
  (``vw text`` also parses each line); ``--oaa 10`` for ten outputs. One
  hidden layer only: it has a similar size, not the same semantics.

Every input a peer needs (arrays, dicts, tensors, examples) is made before its
timing starts; only the learning is timed, after one untimed warm-up run.

**Quality.** Prequential accuracy (each sample predicted, then learned) on
real streams that installed packages ship: River's Phishing, Bananas and
ImageSegments, and scikit-learn's digits in file order, through
``river.evaluate.progressive_val_score``, with the wall time of each run:

- ``streammlp``: ``StandardScaler() | RiverMLPClassifier(classes)`` with the
  adapter's defaults (River's online standardisation: running mean and
  variance, nothing seen ahead), and ``streammlp seed`` with MLP's defaults,
  the seed's (``STREAMMLP``); one configuration for every stream;
- ``River LogReg``: ``StandardScaler() | LogisticRegression()`` (one-vs-rest
  for several classes);
- ``River Hoeffding``: ``HoeffdingTreeClassifier()`` on the raw features.

Run from the repository root (about 7 minutes; ``--quick`` takes about 10 seconds)::

    python bench/peers.py
    python bench/peers.py --quick
    python bench/peers.py --repeats 9 --plot peers.png
    python bench/peers.py --sizes 3-4-1 --peers streammlp,vw,river --no-quality

Peers that are not installed are skipped with a note. Timings are printed,
never asserted: machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import time
import warnings
from typing import Callable

import numpy as np

from streammlp import MLP, reference

SIZES = ([3, 4, 1], [16, 32, 1], [64, 128, 10], [256, 512, 10])
LR = 0.1
SECONDS = 0.3  # target duration of one timing; --quick uses 0.01
# The streammlp configurations of the quality table, the same for every stream: the
# adapter's defaults (32 tanh units, Glorot weights, cross-entropy, lr 0.1), and MLP's (the
# seed's logistic units, weights uniform in [-1, 1], SSE, lr 0.1) with as many hidden units.
STREAMMLP = {"streammlp": dict(seed=0),
             "streammlp seed": dict(activation="logistic", init="uniform", loss="sse", seed=0)}


class Skip(Exception):
    """A peer that cannot run here; the message says why."""


def _need(module: str, why: str = ""):
    try:
        return importlib.import_module(module)
    except ImportError:
        raise Skip(f"{module.split('.')[0]} not installed{why}") from None


# -- the stream -----------------------------------------------------------------------------

def stream(layers: list[int], n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` inputs uniform in [-1, 1]; a 0/1 target (one output) or a class label (several)."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1.0, 1.0, (n, layers[0]))
    y = (X[:, 0] >= 0).astype(float) if layers[-1] == 1 else rng.integers(0, layers[-1], n)
    return X, y


def one_hot(y: np.ndarray, k: int) -> np.ndarray:
    return np.eye(k)[y] if k > 1 else y.reshape(-1, 1)


# -- the peers: each makes a model of ``layers`` and returns (prepare, learn) -----------------
# prepare(X, y) turns the stream into what the peer takes (untimed); learn(data) makes one
# step per sample, in order (timed).

Peer = Callable[[list[int]], tuple[Callable, Callable]]


def streammlp(layers):
    net = MLP(layers, lr=LR, seed=0)
    return (lambda X, y: (X, y)), lambda data: net.learn(*data)


def streammlp_per_call(layers):
    net = MLP(layers, lr=LR, seed=0)

    def learn(rows):
        for x, t in rows:
            net.learn(x, t)
    return (lambda X, y: [(X[i:i + 1], y[i:i + 1]) for i in range(len(X))]), learn


def streammlp_learn_one(layers):
    _need("river")
    from streammlp.adapters import RiverMLPClassifier, RiverMLPRegressor
    k, seed = layers[-1], dict(hidden=tuple(layers[1:-1]), activation="logistic",
                               init="uniform", lr=LR, seed=0)  # the nets of the other peers
    model = (RiverMLPRegressor(output="logistic", **seed) if k == 1 else
             RiverMLPClassifier(list(range(k)), loss="sse", **seed))

    def learn(rows):
        for x, t in rows:
            model.learn_one(x, t)
    return (lambda X, y: list(zip(_dicts(X), y.tolist()))), learn


def numpy_loop(layers):
    net = MLP(layers, lr=LR, seed=0)
    Ws, bs = [W.copy() for W in net.weights], [b.copy() for b in net.biases]
    return (lambda X, y: (X, one_hot(y.astype(np.int64) if layers[-1] > 1 else y, layers[-1])),
            lambda data: reference.learn(Ws, bs, *data, LR))


def river_mlp(layers):
    river = _need("river")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from river import neural_net
    except ImportError:
        raise Skip(f"River {river.__version__} has no neural_net (removed after 0.25): "
                   "pip install 'river==0.25.0'") from None
    _need("pandas", " (River's MLP needs it)")
    from river import optim
    sigmoid = neural_net.activations.Sigmoid
    model = neural_net.MLPRegressor(hidden_dims=tuple(layers[1:-1]),
                                    activations=(sigmoid,) * (len(layers) - 1),
                                    loss=optim.losses.Squared(), optimizer=optim.SGD(LR / 2),
                                    seed=0)
    k = layers[-1]

    def prepare(X, y):
        targets = y.tolist() if k == 1 else [dict(enumerate(t)) for t in one_hot(y, k).tolist()]
        return list(zip(_dicts(X), targets))

    def learn(rows):
        for x, t in rows:
            model.learn_one(x, t)
    return prepare, learn


def sklearn_mlp(layers):
    nn = _need("sklearn.neural_network")
    common = dict(hidden_layer_sizes=tuple(layers[1:-1]), activation="logistic", solver="sgd",
                  learning_rate_init=LR, momentum=0.0, nesterovs_momentum=False, alpha=0.0,
                  random_state=0)
    k = layers[-1]
    model = nn.MLPRegressor(**common) if k == 1 else nn.MLPClassifier(**common)
    X0, y0 = stream(layers, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.partial_fit(X0, y0, **({} if k == 1 else {"classes": np.arange(k)}))

    def learn(rows):
        for x, t in rows:
            model.partial_fit(x, t)
    return (lambda X, y: [(X[i:i + 1], y[i:i + 1]) for i in range(len(X))]), learn


def torch_mlp(layers):
    torch = _need("torch", " (not in any extra: its default wheel is gigabytes)")
    torch.manual_seed(0)
    torch.set_num_threads(1)
    modules = []
    for n_in, n_out in zip(layers[:-1], layers[1:]):
        modules += [torch.nn.Linear(n_in, n_out, dtype=torch.float64), torch.nn.Sigmoid()]
    model = torch.nn.Sequential(*modules)
    sgd = torch.optim.SGD(model.parameters(), lr=LR)

    def prepare(X, y):
        T = one_hot(y.astype(np.int64) if layers[-1] > 1 else y, layers[-1])
        return list(zip(torch.from_numpy(X), torch.from_numpy(np.ascontiguousarray(T))))

    def learn(rows):
        for x, t in rows:
            sgd.zero_grad()
            loss = 0.5 * ((model(x) - t) ** 2).sum()  # ½ SSE, as streammlp's
            loss.backward()
            sgd.step()
    return prepare, learn


def _vw_workspace(layers):
    if len(layers) != 3:
        raise Skip("VW's --nn has exactly one hidden layer")
    vw = _need("vowpalwabbit")
    k = layers[-1]
    multi = f"--oaa {k} " if k > 1 else ""
    ws = vw.Workspace(f"--quiet --sgd -l {LR} --loss_function squared {multi}--nn {layers[1]}")

    def lines(X, y):
        labels = (y + 1).astype(np.int64).tolist() if k > 1 else y.tolist()
        return [f"{t} | " + " ".join(f"f{j}:{v:.17g}" for j, v in enumerate(row))
                for row, t in zip(X.tolist(), labels)]
    return ws, lines


def vw_parsed(layers):
    ws, lines = _vw_workspace(layers)
    done: list = []

    def prepare(X, y):
        for example in done.pop() if done else ():  # the previous timing's go back to VW's pool
            ws.finish_example(example)
        examples = [ws.parse(line) for line in lines(X, y)]
        done.append(examples)
        return examples

    def learn(examples):
        for example in examples:
            ws.learn(example)
    return prepare, learn


def vw_text(layers):
    ws, lines = _vw_workspace(layers)

    def learn(rows):
        for line in rows:
            ws.learn(line)
    return lines, learn


def _dicts(X: np.ndarray) -> list[dict]:
    """Rows as River's dicts, keyed by zero-padded names: sorted, they are in column order."""
    names = [f"x{j:03d}" for j in range(X.shape[1])]
    return [dict(zip(names, row)) for row in X.tolist()]


PEERS: dict[str, Peer] = {
    "streammlp": streammlp, "streammlp 1 row/call": streammlp_per_call,
    "streammlp learn_one": streammlp_learn_one, "numpy": numpy_loop, "river": river_mlp,
    "sklearn": sklearn_mlp, "torch": torch_mlp, "vw": vw_parsed, "vw text": vw_text,
}


# -- timing ---------------------------------------------------------------------------------

def rates(peer: Peer, layers: list[int], target: float, repeats: int) -> tuple[int, float, float]:
    """Rows per timing, median and best samples/s of one peer, after an untimed warm-up run."""
    prepare, learn = peer(layers)

    def seconds(n: int) -> float:
        data = prepare(*stream(layers, n, seed=n))
        start = time.perf_counter()
        learn(data)
        return time.perf_counter() - start

    n = 16
    seconds(n)  # warm-up: compiles, or loads from the Numba cache; first-call set-up
    while (t := seconds(n)) < target / 10:
        n *= 4
    n = max(1, round(n * target / t))
    times = [seconds(n) for _ in range(repeats)]
    return n, n / statistics.median(times), n / min(times)


def speed(sizes=SIZES, peers=tuple(PEERS), target: float = SECONDS, repeats: int = 5,
          out: Callable[[str], None] = print) -> list[dict]:
    """Time every peer on every size; print a table; return its rows (skipped peers included)."""
    rows, notes = [], {}
    out(f"{'size':>11} {'peer':>21} {'rows':>9} {'median/s':>12} {'best/s':>12} "
        f"{'streammlp x':>12}")
    for layers in sizes:
        name, base = "-".join(map(str, layers)), None
        for peer in peers:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    n, median, best = rates(PEERS[peer], list(layers), target, repeats)
                except Skip as e:
                    notes[peer] = notes.get(peer) or str(e)
                    rows.append(dict(size=name, peer=peer, skipped=str(e)))
                    out(f"{name:>11} {peer:>21} {'skipped':>9}")
                    continue
            base = median if peer == "streammlp" else base
            ratio = base / median if base else float("nan")
            rows.append(dict(size=name, peer=peer, rows=n, median=median, best=best, ratio=ratio))
            out(f"{name:>11} {peer:>21} {n:>9,} {median:>12,.0f} {best:>12,.0f} {ratio:>12,.1f}")
    for peer, note in notes.items():
        out(f"skipped {peer} where it did not run: {note}")
    return rows


# -- quality ----------------------------------------------------------------------------------

def streams(limit: int | None = None) -> dict[str, list[tuple[dict, object]]]:
    """The real streams that installed packages ship, as lists of (x, y), in file order."""
    import itertools
    found = {}
    try:
        from river import datasets
        for name, dataset in (("Phishing", datasets.Phishing), ("Bananas", datasets.Bananas),
                              ("ImageSegments", datasets.ImageSegments)):
            found[name] = list(itertools.islice(dataset(), limit))
    except ImportError:
        pass
    try:
        from sklearn.datasets import load_digits
        digits = load_digits()
        names = [f"p{j:02d}" for j in range(digits.data.shape[1])]
        found["digits"] = [(dict(zip(names, row)), int(t)) for row, t in
                           itertools.islice(zip(digits.data.tolist(), digits.target), limit)]
    except ImportError:
        pass
    return found


def learners(classes: list) -> dict[str, Callable[[], object]]:
    """Fresh River-style models for a stream with these classes."""
    from river import linear_model, multiclass, preprocessing, tree
    from streammlp.adapters import RiverMLPClassifier
    binary = len(classes) == 2
    mlps = {name: (lambda kw=kw: preprocessing.StandardScaler() | RiverMLPClassifier(classes, **kw))
            for name, kw in STREAMMLP.items()}
    return {
        **mlps,
        "River LogReg": lambda: preprocessing.StandardScaler() | (
            linear_model.LogisticRegression() if binary
            else multiclass.OneVsRestClassifier(linear_model.LogisticRegression())),
        "River Hoeffding": lambda: tree.HoeffdingTreeClassifier(),
    }


def quality(limit: int | None = None, out: Callable[[str], None] = print) -> list[dict]:
    """Prequential accuracy and wall time of each learner on each stream; print a table."""
    try:
        from river import evaluate, metrics
    except ImportError:
        out("quality: skipped, River is not installed (pip install 'streammlp[river]')")
        return []
    rows = []
    out(f"{'stream':>13} {'samples':>8} {'classes':>7} {'learner':>16} {'accuracy':>9} "
        f"{'seconds':>8}")
    for name, data in streams(limit).items():
        classes = sorted({y for _, y in data}, key=str)
        for learner, make in learners(classes).items():
            evaluate.progressive_val_score(data[:20], make(), metrics.Accuracy())  # warm-up
            model, metric = make(), metrics.Accuracy()
            start = time.perf_counter()
            evaluate.progressive_val_score(data, model, metric)
            seconds = time.perf_counter() - start
            rows.append(dict(stream=name, samples=len(data), classes=len(classes), learner=learner,
                             accuracy=metric.get(), seconds=seconds))
            out(f"{name:>13} {len(data):>8} {len(classes):>7} {learner:>16} "
                f"{metric.get():>9.2%} {seconds:>8.2f}")
    return rows


def versions() -> str:
    """One line naming each peer's installed version."""
    found = []
    for module in ("numpy", "numba", "river", "sklearn", "torch", "vowpalwabbit", "pandas"):
        try:
            found.append(f"{module} {importlib.import_module(module).__version__}")
        except ImportError:
            found.append(f"{module} absent")
        except AttributeError:
            found.append(f"{module} (version unknown)")
    return ", ".join(found)


def plot(rows: list[dict], path: str) -> None:
    """Samples/s of every peer per size, log scale, as a grouped bar chart."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    sizes = list(dict.fromkeys(r["size"] for r in rows))
    peers = list(dict.fromkeys(r["peer"] for r in rows if "median" in r))
    width = 0.8 / len(peers)
    fig, ax = plt.subplots(figsize=(10, 4.5))
    for i, peer in enumerate(peers):
        rate = {r["size"]: r["median"] for r in rows if r["peer"] == peer and "median" in r}
        ax.bar([s + (i - (len(peers) - 1) / 2) * width for s in range(len(sizes))],
               [rate.get(size, 0) for size in sizes], width, label=peer)
    ax.set_yscale("log")
    ax.set_xticks(range(len(sizes)), sizes)
    ax.set_ylabel("samples/s (median), one SGD step each")
    ax.set_title("Per-sample SGD: streammlp and its peers")
    ax.legend(fontsize=8, ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run, a few seconds")
    parser.add_argument("--repeats", type=int, default=5, help="timings per figure (default 5)")
    parser.add_argument("--peers", default=",".join(PEERS),
                        help=f"comma-separated, of: {', '.join(PEERS)}")
    parser.add_argument("--no-quality", action="store_true", help="speed table only")
    parser.add_argument("--sizes", help="comma-separated nets of the speed table, e.g. 3-4-1 "
                        "(default: all four; --quick: the first two)")
    parser.add_argument("--plot", metavar="PNG", help="also draw the speed table")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats {args.repeats}; expected at least 1")
    peers = args.peers.split(",")
    unknown = [p for p in peers if p not in PEERS]
    if unknown:
        parser.error(f"unknown peers {unknown}; expected some of {', '.join(PEERS)}")
    quick = args.quick
    sizes = SIZES[:2] if quick else SIZES
    if args.sizes:
        names = {"-".join(map(str, layers)): layers for layers in SIZES}
        if any(name not in names for name in args.sizes.split(",")):
            parser.error(f"--sizes {args.sizes}; expected some of {', '.join(names)}")
        sizes = [names[name] for name in args.sizes.split(",")]
    print(versions())
    rows = speed(sizes, peers, 0.01 if quick else SECONDS,
                 min(args.repeats, 2) if quick else args.repeats)
    if args.plot:
        plot(rows, args.plot)
    if not args.no_quality:
        print()
        quality(300 if quick else None)


if __name__ == "__main__":
    main()
