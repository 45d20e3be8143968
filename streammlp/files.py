"""Samples from files: CSV (the seed's format) and NumPy ``.npz``."""

from __future__ import annotations

import csv
import os

import numpy as np


def read_samples(path: str | os.PathLike, target: str = "output") -> tuple[np.ndarray, np.ndarray]:
    """Inputs ``X`` and targets ``y`` from a CSV or ``.npz`` file.

    CSV: a header row, then one sample per row; the column named ``target`` is
    the target, every other column an input. ``.npz``: arrays ``X`` and ``y``.
    A malformed file raises ``ValueError`` naming the line.
    """
    path = os.fspath(path)
    if path.endswith(".npz"):
        with np.load(path, allow_pickle=False) as data:
            if "X" not in data or "y" not in data:
                raise ValueError(f"{path}: expected arrays 'X' and 'y', found {sorted(data.files)}")
            return data["X"], data["y"]
    with open(path, newline="") as f:
        rows = csv.reader(f)
        header = next(rows, None)
        if not header:
            raise ValueError(f"{path}: empty file; expected a header row naming the columns")
        header = [name.strip() for name in header]
        if target not in header:
            raise ValueError(f"{path}, line 1: no column {target!r} in the header {header}; "
                             "name the target column with --target")
        t = header.index(target)
        X, y = [], []
        for row in rows:
            line = rows.line_num
            if not row:
                continue
            if len(row) != len(header):
                raise ValueError(f"{path}, line {line}: {len(row)} fields; the header has {len(header)}")
            try:
                values = [float(v) for v in row]
            except ValueError as e:
                raise ValueError(f"{path}, line {line}: {e}") from None
            y.append(values.pop(t))
            X.append(values)
    if not X:
        raise ValueError(f"{path}: no samples after the header")
    return np.array(X), np.array(y)
