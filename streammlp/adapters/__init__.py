"""An :class:`~streammlp.MLP` behind scikit-learn's and River's interfaces.

- scikit-learn: ``OnlineMLPClassifier`` and ``OnlineMLPRegressor``, with
  ``partial_fit``, ``fit``, ``predict`` (and ``predict_proba``), usable in a
  ``Pipeline``, ``clone``, ``GridSearchCV``.
- River: ``RiverMLPClassifier`` and ``RiverMLPRegressor``, with ``learn_one``,
  ``predict_one`` (and ``predict_proba_one``) and the ``*_many`` methods, so
  they drop into ``river.evaluate.progressive_val_score``.

Every one of them trains the wrapped network with :meth:`MLP.learn`: one
exact gradient step per row, in the order given, nothing shuffled or batched.
Their defaults are not the seed's (logistic hidden units, weights uniform in
[-1, 1], SSE): 32 tanh hidden units, Glorot weights, cross-entropy for
classes, which learn faster on most streams (``bench/peers.py``); pass
``activation="logistic", init="uniform", loss="sse"`` for the seed's.

Neither library is a dependency of streammlp, and ``import streammlp.adapters``
imports neither. Their base classes are needed all the same (``check_estimator``,
``clone`` and ``progressive_val_score`` test ``isinstance`` against them), so each
public class is made the first time its name is looked up, by the module
``__getattr__`` below (PEP 562): it imports the library, then mixes the
behaviour written in plain classes (``_sklearn.py``, ``_river.py``) with
that library's base classes. Install the library with an extra::

    pip install 'streammlp[sklearn]'   # or 'streammlp[river]'
"""

from __future__ import annotations

import importlib
import types

SKLEARN = ("OnlineMLPClassifier", "OnlineMLPRegressor")
RIVER = ("RiverMLPClassifier", "RiverMLPRegressor")
__all__ = [*SKLEARN, *RIVER]

_built: dict[str, type] = {}  # the public classes made so far, by name


def __getattr__(name: str) -> type:
    """Make (once) and return a public class, importing its host library."""
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if name not in _built:
        if name in SKLEARN:
            from ._sklearn import _SklearnClassifier, _SklearnRegressor
            base = _require("sklearn.base", "sklearn")
            _built["OnlineMLPClassifier"] = _host(
                "OnlineMLPClassifier", _SklearnClassifier, base.ClassifierMixin, base.BaseEstimator)
            _built["OnlineMLPRegressor"] = _host(
                "OnlineMLPRegressor", _SklearnRegressor, base.RegressorMixin, base.BaseEstimator)
        else:
            from ._river import _RiverClassifier, _RiverRegressor
            base = _require("river.base", "river")
            _built["RiverMLPClassifier"] = _host(
                "RiverMLPClassifier", _RiverClassifier, base.MiniBatchClassifier)
            _built["RiverMLPRegressor"] = _host(
                "RiverMLPRegressor", _RiverRegressor, base.MiniBatchRegressor)
    return _built[name]


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


def _require(module: str, extra: str) -> types.ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(f"{module.split('.')[0]} is not installed; the adapters need it: "
                          f"pip install 'streammlp[{extra}]'") from e


def _host(name: str, behaviour: type, *bases: type) -> type:
    """The class ``name``: ``behaviour`` first in the MRO, then the host library's ``bases``."""
    return types.new_class(name, (behaviour, *bases), exec_body=lambda ns: ns.update(
        __module__=__name__, __qualname__=name, __doc__=behaviour.__doc__))
