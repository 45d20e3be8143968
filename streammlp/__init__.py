"""streammlp: an online trainer for multilayer perceptrons, one exact gradient step per sample."""

from .metrics import StreamMetrics
from .network import MLP, InputError, Prequential, read
from .race import Race, RaceResult

__all__ = ["MLP", "InputError", "Prequential", "Race", "RaceResult", "StreamMetrics", "read"]
__version__ = "0.1.0"
