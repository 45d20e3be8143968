"""Wire protocol v1: every message the service sends or takes, encoded with msgpack.

Numeric arrays travel as ``{"dtype": "<f8", "shape": [n, d], "data": <bin>}``:
raw little-endian bytes, row-major, decoded with ``np.frombuffer`` (no
per-element Python work). Plain lists of numbers are accepted too.

- Ingest (PUSH -> PULL), one frame: ``{"v": 1, "x": X, "y": Y}`` with optional
  ``"producer": str``, ``"seq": int`` and ``"model": str`` (the key, ``--keyed``).
- Publish (PUB -> SUB), two frames ``[topic, body]``: ``weights``, ``metrics``, ``events``;
  a keyed service's models on ``model/KEY/weights`` and ``model/KEY/metrics``.
- Control (REQ/DEALER -> ROUTER): ``{"op": ...}`` -> ``{"ok": true, ...}`` or
  ``{"ok": false, "error": "..."}``.

Nothing here touches sockets; the README documents the frames for other languages.
"""

from __future__ import annotations

import itertools
import math
import re
import string
import time
from dataclasses import dataclass
from typing import Iterator, NamedTuple

import msgpack
import numpy as np
from numba import njit

from .kernels import JIT
from .network import InputError

VERSION = 1
# Where the service binds by default, and where the clients and commands look for it.
INGEST_ENDPOINT = "tcp://127.0.0.1:5555"
PUBLISH_ENDPOINT = "tcp://127.0.0.1:5556"
CONTROL_ENDPOINT = "tcp://127.0.0.1:5557"
WEIGHTS, METRICS, EVENTS = b"weights", b"metrics", b"events"
MAX_MESSAGE_BYTES = 64 << 20  # ZMQ_MAXMSGSIZE on every socket that takes input
MAX_ROWS = 1 << 20  # samples in one message
KEY_CHARACTERS = string.ascii_letters + string.digits + "._-"
MODEL_KEY = re.compile(f"[{re.escape(KEY_CHARACTERS)}]{{1,128}}")  # what a model key may be
MAX_FIXSTR = 31  # the longest string msgpack writes with a one-byte header
_KEY_BYTE = np.isin(np.arange(256), np.frombuffer(KEY_CHARACTERS.encode(), np.uint8))
DEFAULT_MODEL = "default"  # the model of a message that names none, on a keyed service
ARRAY_DTYPES = ("<f4", "<f8", "<i4", "<i8")
EXACT_INT = 1 << 53  # integers up to this magnitude are exact as float64
_ARRAY_DTYPES = {name: np.dtype(name) for name in ARRAY_DTYPES}


class ProtocolError(InputError):
    """A message that cannot be decoded; ``reason`` is the short name it is counted under."""


def check_key(key) -> str:
    """``key`` if it is a valid model key, else ``ProtocolError`` (reason ``bad_model``)."""
    if not isinstance(key, str) or not MODEL_KEY.fullmatch(key):
        raise ProtocolError("bad_model", f"model key {key!r} is not 1-128 characters of A-Z a-z "
                            "0-9 . _ -; name the model with those")
    return str(key)


class Samples(NamedTuple):
    """A decoded ingest message (arrays not yet checked against any network)."""

    x: np.ndarray
    y: np.ndarray
    producer: str | None = None
    seq: int | None = None
    model: str | KeySpans | None = None  # the model key (keyed services); a drain's: KeySpans


# -- arrays ----------------------------------------------------------------------------------

def encode_array(a: np.ndarray) -> dict:
    """A numeric array as the wire's binary array map (little-endian, row-major).

    Other dtypes travel as ``<f8`` (floats) or ``<i8`` (bool and integers).
    """
    a = np.asarray(a)
    if a.dtype.str not in _ARRAY_DTYPES:
        a = a.astype("<f8" if a.dtype.kind == "f" else "<i8")
    return {"dtype": a.dtype.str, "shape": list(a.shape), "data": a.tobytes()}


def decode_array(name: str, obj) -> np.ndarray:
    """A binary array map or a (nested) list of numbers as an ndarray; ``ProtocolError`` if neither."""
    if type(obj) is dict:
        dtype, shape, data = _ARRAY_DTYPES.get(obj.get("dtype")), obj.get("shape"), obj.get("data")
        # The common case first, written out: this runs twice for every message.
        if dtype is not None and type(shape) is list and type(data) is bytes:
            if len(shape) == 2:
                n, d = shape
                if (type(n) is int and type(d) is int and 0 <= n <= MAX_MESSAGE_BYTES
                        and 0 <= d <= MAX_MESSAGE_BYTES and n * d * dtype.itemsize == len(data)):
                    return np.frombuffer(data, dtype=dtype).reshape(n, d)
            elif len(shape) == 1:
                n = shape[0]
                if type(n) is int and n * dtype.itemsize == len(data) and n >= 0:
                    return np.frombuffer(data, dtype=dtype)
        # Something is off: say what.
        if dtype is None:
            raise ProtocolError("bad_array", f"{name}.dtype is {obj.get('dtype')!r}; expected one of "
                                f"{ARRAY_DTYPES}")
        if (type(shape) is not list or not 1 <= len(shape) <= 2
                or not all(type(s) is int and s >= 0 for s in shape)):
            raise ProtocolError("bad_array", f"{name}.shape is {shape!r}; expected [n] or [n, d] "
                                "with non-negative integers")
        if type(data) is not bytes:
            raise ProtocolError("bad_array", f"{name}.data is {type(data).__name__}; expected bin")
        raise ProtocolError("bad_array", f"{name}.data has {len(data):,} bytes; shape {shape} of "
                            f"{dtype.str} needs {math.prod(shape) * dtype.itemsize:,}")
    if isinstance(obj, list):
        try:
            a = np.array(obj)
        except ValueError as e:
            raise ProtocolError("bad_array", f"{name} is not a rectangular list: {e}") from None
        if a.dtype.kind not in "biuf" or a.ndim > 2:
            raise ProtocolError("bad_array", f"{name} must be a list of numbers or of rows of "
                                f"numbers; got {a.dtype} with {a.ndim} dimensions")
        # numpy turns true/false among numbers into 1/0, and a huge integer among floats into a
        # rounded float: look at the items themselves.
        types = set(map(type, _values(obj, a.ndim)))  # a tenth of the time np.array takes
        if bool in types:
            raise ProtocolError("dtype", f"{name} holds true/false; expected numbers "
                                "(send booleans as 0 and 1)")
        if int in types and a.dtype.kind == "f":
            _check_exact(name, np.array([v for v in _values(obj, a.ndim) if type(v) is int],
                                        dtype=object))
        return a
    raise ProtocolError("bad_array", f"{name} is {type(obj).__name__}; expected a list of rows "
                        "or a binary array map {dtype, shape, data}")


def _values(obj: list, ndim: int):
    """The items of a list of numbers or of rows of numbers, flat."""
    return obj if ndim == 1 else itertools.chain.from_iterable(obj)


def _check_exact(name: str, a: np.ndarray) -> None:
    """``ProtocolError`` ("dtype") for integers a float64 cannot hold exactly (beyond ±2^53):
    the value trained would not be the value sent (2^63-1 is often a sentinel, not a sample)."""
    if a.dtype.kind in "iuO" and a.size and (a.max() > EXACT_INT or a.min() < -EXACT_INT):
        bad = a.max() if a.max() > EXACT_INT else a.min()
        raise ProtocolError("dtype", f"{name} holds the integer {bad}, beyond ±2^53, which a "
                            "float cannot hold exactly; send floats, or values within ±2^53")


# -- framing -------------------------------------------------------------------------------------

def pack(body: dict) -> bytes:
    return msgpack.packb(body, use_bin_type=True)


def unpack(frame: bytes) -> dict:
    """One msgpack map from an untrusted frame.

    ``unpackb`` caps every declared length by the frame's own size, and the
    sockets cap frames at ``MAX_MESSAGE_BYTES``, so no frame can claim more memory.
    """
    try:
        body = msgpack.unpackb(frame, raw=False, strict_map_key=True)
    except (ValueError, TypeError, msgpack.UnpackException) as e:
        raise ProtocolError("not_msgpack", f"frame is not one msgpack value: {_why(e)}") from None
    if not isinstance(body, dict):
        raise ProtocolError("bad_message", f"message is a {type(body).__name__}; expected a map")
    return body


def _why(e: Exception) -> str:
    """What msgpack found wrong, in words (its own messages are empty or name internal limits)."""
    text = str(e)
    if isinstance(e, msgpack.FormatError) or not text:
        return "it holds a byte that starts no msgpack value (such as 0xc1)"
    if isinstance(e, msgpack.ExtraData):
        return "bytes follow the first value; send one value per frame"
    if "incomplete input" in text or "exceeds max_" in text:
        return "it ends inside a value (truncated, or a length larger than the frame)"
    return text


# -- ingest --------------------------------------------------------------------------------------

def encode_samples(X, y, producer: str | None = None, seq: int | None = None,
                   binary: bool = True, model: str | None = None) -> bytes:
    """An ingest message: binary arrays by default, plain lists with ``binary=False``.

    ``model`` goes last, so that a producer's frames for many keys differ only in
    their payloads and that last string (see :class:`FrameTemplate`)."""
    body: dict = {"v": VERSION}
    if binary:
        body["x"], body["y"] = encode_array(X), encode_array(y)
    else:
        body["x"], body["y"] = _as_list(X), _as_list(y)
    if producer is not None:
        body["producer"] = producer
    if seq is not None:
        body["seq"] = seq
    if model is not None:
        body["model"] = check_key(model)
    return pack(body)


def encode_batch(X, y, producer: str | None = None, seq: int | None = None,
                 binary: bool = True, model: str | None = None) -> Iterator[bytes]:
    """Ingest frames for any number of rows: one, or several in order, each within
    ``MAX_ROWS`` rows and ``MAX_MESSAGE_BYTES`` (``seq``, if given, numbers them up from it).

    ``ValueError`` if a batch over the limits cannot be split: ``X`` and ``y``
    differ in length, or one row alone is larger than a frame.
    """
    X, y = np.asarray(X), np.asarray(y)
    n = len(X) if X.ndim else 0
    if n <= MAX_ROWS:
        frame = encode_samples(X, y, producer, seq, binary, model)
        if len(frame) <= MAX_MESSAGE_BYTES:
            yield frame
            return
    if y.ndim == 0 or len(y) != n:
        raise ValueError(f"X has {n:,} rows and y {len(y) if y.ndim else 0:,} targets; a batch "
                         f"over {MAX_ROWS:,} rows or {MAX_MESSAGE_BYTES >> 20} MiB is sent in "
                         "parts, which needs one target per row")
    # At most 9 bytes per number in either encoding (msgpack float64; binary <f8 is 8), 10 per row
    # for list headers, and room for the map around them.
    per_row = 9 * (X.size + y.size) // n + 10
    rows = min(MAX_ROWS, (MAX_MESSAGE_BYTES - 512 - len(producer or "")) // per_row)
    if rows < 1:
        raise ValueError(f"one row of X takes about {per_row:,} bytes; a message holds at most "
                         f"{MAX_MESSAGE_BYTES:,}")
    for part, start in enumerate(range(0, n, rows)):
        yield encode_samples(X[start:start + rows], y[start:start + rows], producer,
                             None if seq is None else seq + part, binary, model)


def _as_list(a) -> list:
    """Nested lists of numbers; booleans as 0/1, as ``encode_array`` sends them (true/false on
    the wire are not numbers)."""
    a = np.asarray(a)
    return (a.astype(np.int64) if a.dtype == bool else a).tolist()


def decode_samples(frame: bytes) -> Samples:
    body = unpack(frame)
    if body.get("v") != VERSION:
        raise ProtocolError("bad_version", f"message has v={body.get('v')!r}; this service speaks "
                            f"v={VERSION}")
    x, y = body.get("x"), body.get("y")
    if "hello" in body:
        raise ProtocolError("bad_message", "a hello needs 'producer' (a str), and only the "
                            "acknowledged ingest (--ingest-acked) answers one")
    if x is None or y is None:
        missing = " and ".join(repr(k) for k in ("x", "y") if body.get(k) is None)
        raise ProtocolError("bad_message", f"message lacks {missing}; expected keys v, x, y")
    producer, seq = body.get("producer"), body.get("seq")
    if producer is not None and type(producer) is not str:
        raise ProtocolError("bad_message", f"producer is {type(producer).__name__}; expected str")
    if seq is not None and type(seq) is not int:
        raise ProtocolError("bad_message", f"seq is {type(seq).__name__}; expected int")
    model = body.get("model")
    if model is not None:
        check_key(model)
    x, y = decode_array("x", x), decode_array("y", y)
    if len(x) > MAX_ROWS:
        raise ProtocolError("too_large", f"message has {len(x):,} rows; at most {MAX_ROWS:,} "
                            "(client.Producer splits larger batches)")
    if len(x) == 0:
        raise ProtocolError("empty", "x has no rows; send at least one")
    _check_exact("x", x)
    _check_exact("y", y)
    return Samples(x, y, producer, seq, model)


class FrameTemplate:
    """One valid ingest frame with binary ``x`` and ``y``, its two payloads cut out.

    msgpack is read front to back, and the bytes before a payload (its bin
    header included) fix where it starts and how long it is. So a frame of the
    same length that equals the template outside the payloads decodes exactly
    like it, but for the payloads' values: a drain of such frames (a producer's
    stream of small messages) is decoded in one numpy step instead of one
    :func:`decode_samples` each, about 50x less work per message, straight from
    the buffer they were received into.

    A frame whose last value is its ``model`` key (as :func:`encode_samples`
    writes it) may differ in that key too, in length as well: every frame must
    then equal the template up to the key's string header, and end with a key
    of the length that header gives; ``decode`` returns the keys in ``model``, as
    :class:`KeySpans`, one per frame.

    Raises ``ProtocolError`` if the frame is not a valid ingest message whose
    ``x`` is ``(n, d)`` and ``y`` ``(n,)`` or ``(n, k)`` binary arrays, n >= 1.
    """

    def __init__(self, frame: bytes) -> None:
        frame = bytes(frame)  # its own copy: the frame may sit in a buffer that is reused
        self.message = decode_samples(frame)
        x, y = self.message.x, self.message.y
        if x.ndim != 2 or not 0 < len(x) == len(y):
            raise ProtocolError("bad_message", "a template needs n >= 1 rows of x and n targets")
        spans = _payload_spans(frame)
        if set(spans) != {"x", "y"}:
            raise ProtocolError("bad_message", "a template needs x and y as binary arrays")
        (xs, xe), (ys, ye) = sorted(spans.values())
        # Where the fixed bytes end: the frame's end, or the header of a last "model" value.
        self.key_at = len(frame)
        model = self.message.model
        last = _MODEL_FIELD + msgpack.packb(model) if model else b""
        if model and len(model) <= MAX_FIXSTR and frame.endswith(last) and len(frame) - len(last) >= ye:
            self.key_at = len(frame) - len(last) + len(_MODEL_FIELD)  # fixstr: a 1-byte header
        self.frame, self.size = np.frombuffer(frame, np.uint8), len(frame)
        self.fixed = [(0, xs), (xe, ys), (ye, self.key_at)]  # every byte outside the payloads
        self.spans = spans

    def decode(self, data, lengths: list[int]) -> Samples | None:
        """The samples of frames laid back to back in ``data`` (any buffer), of ``lengths``
        bytes each, as one message in order; None unless every frame fits."""
        m, buffer = len(lengths), np.frombuffer(data, np.uint8)
        if self.key_at == self.size:
            if any(n != self.size for n in lengths):
                return None
            rows = buffer[:m * self.size].reshape(m, self.size)
        else:
            ends = np.fromiter(lengths, np.int64, m).cumsum()  # (np.cumsum of a list: 3x slower)
            starts, firsts = np.empty(m, np.int64), np.empty(m, np.int64)
            keys = buffer.view()
            keys.flags.writeable = False  # so one compiled signature reads every kind of drain
            if not _keys_fit(keys, ends, self.key_at, _KEY_BYTE, starts, firsts):
                return None
            # Each frame up to its key's header: rows of a window sliding over the drain (a
            # view: its rows are byte 0, 1, 2, ... of the drain, each key_at + 1 bytes long).
            window = np.ndarray((ends[-1] - self.key_at, self.key_at + 1), np.uint8, buffer,
                                strides=(1, 1))
            rows = window[starts]
        if not all((rows[:, a:b] == self.frame[a:b]).all() for a, b in self.fixed):
            return None
        x, y = (self._stack(rows, name) for name in ("x", "y"))
        try:
            _check_exact("x", x)
            _check_exact("y", y)
        except ProtocolError:  # one of them needs its own verdict
            return None
        if self.key_at == self.size:
            return self.message._replace(x=x, y=y)
        return self.message._replace(x=x, y=y, model=KeySpans(keys, firsts, ends))

    def _stack(self, rows: np.ndarray, name: str) -> np.ndarray:
        """One payload of every frame as one array: the template's rows, m times over."""
        a = getattr(self.message, name)
        start, stop = self.spans[name]
        # Reshape copies the strided payloads if a frame holds several rows; with one row per
        # frame it returns a view of ``data``, which the network's checks copy before training.
        return rows[:, start:stop].view(a.dtype).reshape((len(rows) * len(a),) + a.shape[1:])


_MODEL_FIELD = msgpack.packb("model")  # the field name before a frame's last value, its key


class KeySpans:
    """The model keys of a drain's frames where they lie: frame ``j``'s is
    ``data[firsts[j]:ends[j]]`` (``data``: the drain's bytes, uint8, read-only, valid
    while the drain's buffer is; every byte one that :data:`MODEL_KEY` takes). ``keys[j]`` makes
    it a str, only when asked: a fleet finds them all from the bytes at once
    (``Fleet.find``)."""

    __slots__ = ("data", "firsts", "ends")

    def __init__(self, data: np.ndarray, firsts: np.ndarray, ends: np.ndarray) -> None:
        self.data, self.firsts, self.ends = data, firsts, ends

    def __len__(self) -> int:
        return len(self.firsts)

    def __getitem__(self, j: int) -> str:
        return self.data[self.firsts[j]:self.ends[j]].tobytes().decode("ascii")

    def __iter__(self) -> Iterator[str]:
        return (self[j] for j in range(len(self)))


@njit(**JIT)
def _keys_fit(data, ends, key_at, allowed, starts, firsts):
    """Whether each frame of a drain (frame ``j`` ends at ``ends[j]``, where the next one
    starts) ends in a key as the template's does: a fixstr header at ``key_at`` whose length
    (1 to MAX_FIXSTR) is the rest of the frame, every byte of it ``allowed`` (a bool per
    byte value). Sets where each frame (``starts``) and its key (``firsts``) start.
    Compiled: a drain's keys cost a few µs, where NumPy took ~300."""
    for j in range(len(ends)):
        starts[j] = ends[j - 1] if j else 0
        if ends[j] - starts[j] <= key_at:
            return False
        length = np.int64(data[starts[j] + key_at]) - 0xa0  # fixstr: 0xa0 | length
        firsts[j] = starts[j] + key_at + 1
        if not 1 <= length <= MAX_FIXSTR or ends[j] - firsts[j] != length:
            return False
        for i in range(firsts[j], ends[j]):
            if not allowed[data[i]]:
                return False
    return True


def _payload_spans(frame: bytes) -> dict[str, tuple[int, int]]:
    """Byte offsets ``(start, stop)`` of the ``data`` of the top-level binary array maps x and y."""
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=True)
    unpacker.feed(frame)
    spans = {}
    for _ in range(unpacker.read_map_header()):
        key = unpacker.unpack()
        if key not in ("x", "y"):
            unpacker.skip()
            continue
        try:
            fields = unpacker.read_map_header()
        except ValueError:  # not a map: a list of rows
            unpacker.skip()
            continue
        for _ in range(fields):
            field, value = unpacker.unpack(), unpacker.unpack()
            if field == "data" and type(value) is bytes:
                spans[key] = (unpacker.tell() - len(value), unpacker.tell())
    return spans


# -- publish -------------------------------------------------------------------------------------

def weights_body(net, version: int, run: str | None = None) -> dict:
    """The ``weights`` message of a network (or a race's leader): every layer's W and b as
    binary arrays, the input scaler's mean and variance if it scales, the leader's index.

    ``run`` names the service's run: versions count up within one run only (a
    fresh start, or a resume from an older checkpoint, goes back down).
    """
    body = {"v": VERSION, "version": version, "ts": time.time(),
            "layers": [{"W": encode_array(W), "b": encode_array(b)}
                       for W, b in zip(net.weights, net.biases)],
            "activation": net.activation, "output": net.output}
    if net.scaler_mean is not None:
        body["scaler"] = {"mean": encode_array(net.scaler_mean), "var": encode_array(net.scaler_var)}
    if getattr(net, "leader", None) is not None:
        body["member"] = net.leader
    if run is not None:
        body["run"] = run
    return body


@dataclass
class Weights:
    """A decoded ``weights`` message: the same shapes as ``MLP.weights`` and ``MLP.biases``."""

    version: int
    ts: float
    weights: list[np.ndarray]
    biases: list[np.ndarray]
    activation: str
    output: str
    scaler_mean: np.ndarray | None = None  # inputs are used as (x - mean) / sqrt(var), 0 where var is 0
    scaler_var: np.ndarray | None = None
    member: int | None = None  # with --race: which member leads
    model: str | None = None  # the model's key, on a keyed service
    run: str | None = None  # the service run these versions count in


def decode_weights(body: dict) -> Weights:
    scaler = body.get("scaler") or {}
    return Weights(version=body["version"], ts=body["ts"],
                   weights=[decode_array("W", layer["W"]) for layer in body["layers"]],
                   biases=[decode_array("b", layer["b"]) for layer in body["layers"]],
                   activation=body["activation"], output=body["output"],
                   scaler_mean=decode_array("mean", scaler["mean"]) if scaler else None,
                   scaler_var=decode_array("var", scaler["var"]) if scaler else None,
                   member=body.get("member"), model=body.get("model"),
                   run=body.get("run"))


def model_topic(key: str, kind: bytes) -> bytes:
    """A keyed model's topic, ``model/KEY/weights``: the ``/`` cannot occur in a key, so
    subscribing to ``model/KEY/`` selects exactly one model, ``model/`` all of them."""
    return b"model/" + key.encode() + b"/" + kind


def model_metrics_body(figures: dict, window: int) -> dict:
    """The ``metrics`` message of one model of a keyed service (see ``Fleet.figures``); its
    ``ew_*`` figures weigh a sample ``t`` rows old by ``(1 - 1/window)**t``."""
    return {"v": VERSION, "ts": time.time(), **figures, "window": window}


def event_body(kind: str, **fields) -> dict:
    return {"v": VERSION, "ts": time.time(), "kind": kind, **fields}


# -- control -------------------------------------------------------------------------------------

def ok(**fields) -> bytes:
    return pack({"ok": True, **fields})


def error(message: str) -> bytes:
    return pack({"ok": False, "error": message})
