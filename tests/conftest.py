"""Shared test helpers."""

import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


# Numba compiles a kernel per (activation, output, loss, scaling, dtype, one hidden layer or
# more), ~10 s each on a cold cache. A test that needs "some network" of a kind takes the codes
# the rest of the suite compiles anyway: the seed's (MLP's and the service's defaults), or these
# for classes (the adapters' default for three or more).
SEED_CODES = dict(activation="logistic", output="logistic", loss="sse")
CLASSIFIER = dict(activation="tanh", output="softmax", loss="cross_entropy")


def seed_stream(n: int, seed: int = 0):
    """The seed's kind of data: 3-D points in [-1, 1], class 1 when the first coordinate >= 0."""
    r = np.random.default_rng(seed)
    X = r.uniform(-1, 1, (n, 3))
    return X, (X[:, 0] >= 0).astype(float)


# -- a real service process on 127.0.0.1 with OS-assigned ports -----------------------------------

from service.process import ServiceProcess as running_service  # noqa: E402,F401
