"""Samples from files: CSV (the seed's format) and NumPy ``.npz``."""

from __future__ import annotations

import csv
import math
import os

import numpy as np


def read_samples(path: str | os.PathLike, target: str = "output", finite: bool = False,
                 key: str | None = None):
    """Inputs ``X`` and targets ``y`` from a CSV or ``.npz`` file; with ``key``, also each
    row's model key from that CSV column (``X, y, keys``).

    CSV: a header row, then one sample per row; the column named ``target`` is
    the target, the ``key`` column (text) names the row's model, every other
    column is an input. ``.npz``: arrays ``X`` and ``y``. A malformed file
    raises ``ValueError`` naming the line; so does NaN or Inf with ``finite=True``.
    """
    path = os.fspath(path)
    if key is not None and path.endswith(".npz"):
        raise ValueError(f"{path}: model keys come from a CSV column; a .npz file has none")
    if path.endswith(".npz"):
        with np.load(path, allow_pickle=False) as data:
            if "X" not in data or "y" not in data:
                raise ValueError(f"{path}: expected arrays 'X' and 'y', found {sorted(data.files)}")
            X, y = data["X"], data["y"]
        for name, a in (("X", X), ("y", y)):
            if finite and a.dtype.kind == "f" and not np.isfinite(a).all():
                row = int(np.argmax(~np.isfinite(a).reshape(len(a), -1).all(axis=1)))
                raise ValueError(f"{path}: {name} has NaN or Inf in row {row}; clean or drop it")
        return X, y
    with open(path, newline="") as f:
        rows = csv.reader(f)
        header = next(rows, None)
        if not header:
            raise ValueError(f"{path}: empty file; expected a header row naming the columns")
        header = [name.strip() for name in header]
        if target not in header:
            raise ValueError(f"{path}, line 1: no column {target!r} in the header {header}; "
                             "name the target column with --target")
        if key is not None and key not in header:
            raise ValueError(f"{path}, line 1: no column {key!r} in the header {header}")
        k = None if key is None else header.index(key)
        names = [name for i, name in enumerate(header) if i != k]  # the numeric columns
        t = names.index(target)
        X, y, keys = [], [], []
        for row in rows:
            line = rows.line_num
            if not row:
                continue
            if len(row) != len(header):
                raise ValueError(f"{path}, line {line}: {len(row)} fields; the header has {len(header)}")
            if k is not None:
                keys.append(row.pop(k).strip())
            try:
                values = [float(v) for v in row]
            except ValueError as e:
                raise ValueError(f"{path}, line {line}: {e}") from None
            if finite and not all(map(math.isfinite, values)):
                i = next(i for i, v in enumerate(values) if not math.isfinite(v))
                raise ValueError(f"{path}, line {line}: {names[i]} is {row[i].strip()}; "
                                 "expected a finite number (clean or drop that row)")
            y.append(values.pop(t))
            X.append(values)
    if not X:
        raise ValueError(f"{path}: no samples after the header")
    if key is not None:
        return np.array(X), np.array(y), np.array(keys)
    return np.array(X), np.array(y)
