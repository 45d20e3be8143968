"""streammlp: an online trainer for multilayer perceptrons, one exact gradient step per sample."""

from .fleet import Fleet, FleetResult, RaceFleet, model_seed
from .metrics import StreamMetrics
from .network import MLP, InputError, Prequential, read
from .race import Race, RaceResult

__all__ = ["MLP", "Fleet", "FleetResult", "InputError", "Prequential", "Race", "RaceFleet",
           "RaceResult", "StreamMetrics", "model_seed", "read"]
__version__ = "0.1.0"
