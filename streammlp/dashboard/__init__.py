"""A live dashboard in the browser: ``streammlp dashboard`` (needs the ``dashboard`` extra).

A subscriber like ``streammlp watch`` (``bridge.py``) keeps what the page
shows in bounded boards (``board.py``); an aiohttp server (``server.py``)
pushes each page what changed, as Server-Sent Events, at most four times a
second, with the page, its script and uPlot served from ``static/``: no build
step, no CDN.
"""

from .board import Board, Seen
from .bridge import Bridge
from .server import Dashboard

__all__ = ["Board", "Bridge", "Dashboard", "Seen"]
