"""streammlp: an online trainer for multilayer perceptrons, one exact gradient step per sample."""

from .drift import DriftDetector, PageHinkley
from .fleet import Fleet, FleetResult, RaceFleet, model_seed
from .metrics import StreamMetrics
from .network import MLP, InputError, Prequential, read
from .race import Race, RaceResult, reseed_seed

__all__ = ["MLP", "DriftDetector", "Fleet", "FleetResult", "InputError", "PageHinkley",
           "Prequential", "Race", "RaceFleet", "RaceResult", "StreamMetrics", "model_seed", "read",
           "reseed_seed"]
__version__ = "0.1.0"
