"""Shared test helpers."""

import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def seed_stream(n: int, seed: int = 0):
    """The seed's kind of data: 3-D points in [-1, 1], class 1 when the first coordinate >= 0."""
    r = np.random.default_rng(seed)
    X = r.uniform(-1, 1, (n, 3))
    return X, (X[:, 0] >= 0).astype(float)


# -- a real service process on 127.0.0.1 with OS-assigned ports -----------------------------------

from service.process import ServiceProcess as running_service  # noqa: E402,F401
