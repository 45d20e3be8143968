"""The streammlp trainer service: ``python -m service`` or ``streammlp serve``."""
