"""streammlp: an online trainer for multilayer perceptrons, one exact gradient step per sample."""

from .metrics import StreamMetrics
from .network import MLP, InputError, Prequential, read

__all__ = ["MLP", "InputError", "Prequential", "StreamMetrics", "read"]
__version__ = "0.1.0"
