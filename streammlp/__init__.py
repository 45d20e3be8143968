"""streammlp: an online trainer for multilayer perceptrons, one exact gradient step per sample."""

from .network import MLP, Prequential

__all__ = ["MLP", "Prequential"]
__version__ = "0.1.0"
