"""Model keys to slots, found in compiled code straight from the bytes received.

A keyed service finds every message's model by its key. As a str looked up in
a dict, that cost the service about 0.7 µs a key: a str made of each key, then
a dict that each drain's training had pushed out of cache. A
:class:`KeyTable` keeps the keys' bytes and an open-addressing table in
arrays, so a drain's keys are found in one compiled call, straight from the
frames' bytes, and the cache misses of many keys overlap.

The table is FNV-1a hashes of the keys' bytes with linear probing, at most
half full. Keys are ASCII (``protocol.check_key``): a key's bytes are its
characters.
"""

from __future__ import annotations

from itertools import accumulate

import numpy as np
from numba import njit

from .kernels import JIT, prefetch

FNV_OFFSET = np.uint64(0xCBF29CE484222325)
FNV_PRIME = np.uint64(0x100000001B3)
FIRST_CAPACITY = 16  # table entries of a new table (a power of two)
ENTRY = 4  # values an entry holds: hash, slot + 1, where its key starts and stops in chars


@njit(inline="always", **JIT)
def _hash(data, start, stop):
    """64-bit FNV-1a of the bytes ``data[start:stop]``."""
    h = FNV_OFFSET
    for i in range(start, stop):
        h = (h ^ np.uint64(data[i])) * FNV_PRIME
    return h


@njit(**JIT)
def _find(entries, chars, h, data, start, stop):
    """The slot of key ``data[start:stop]`` (hash ``h``), or -1. ``entries`` holds ENTRY
    values per table entry: the key's hash, its slot + 1 (0: an empty entry) and where its
    bytes lie in ``chars``."""
    mask = len(entries) // ENTRY - 1
    i = np.int64(h & np.uint64(mask))  # int64 indices: int64 with uint64 would give float64
    n = stop - start
    while True:
        e = ENTRY * i
        if entries[e + 1] == 0:
            return -1
        at = np.int64(entries[e + 2])
        if entries[e] == h and np.int64(entries[e + 3]) - at == n:
            k = 0
            while k < n and chars[at + k] == data[start + k]:
                k += 1
            if k == n:
                return np.int64(entries[e + 1]) - 1
        i = (i + 1) & mask


@njit(**JIT)
def _lookup(entries, chars, data, firsts, ends, slots):
    """``slots[j]``: the slot of key ``data[firsts[j]:ends[j]]``, or -1. Every key's entry is
    asked for first, then the bytes it points to, then each key is found: the cache misses
    of many keys overlap, where one key's are one after another."""
    mask = np.uint64(len(entries) // ENTRY - 1)
    hashes = np.empty(len(firsts), np.uint64)
    for j in range(len(firsts)):
        hashes[j] = _hash(data, firsts[j], ends[j])
        prefetch(entries, ENTRY * np.int64(hashes[j] & mask))
    for j in range(len(firsts)):  # an empty entry points at 0: harmless
        prefetch(chars, np.int64(entries[ENTRY * np.int64(hashes[j] & mask) + 2]))
    for j in range(len(firsts)):
        slots[j] = _find(entries, chars, hashes[j], data, firsts[j], ends[j])


@njit(**JIT)
def _insert(entries, chars, offsets, first, stop):
    """Enter the keys of slots ``first`` to ``stop - 1`` (their bytes already in ``chars``)."""
    mask = len(entries) // ENTRY - 1
    for s in range(first, stop):
        h = _hash(chars, offsets[s], offsets[s + 1])
        i = np.int64(h & np.uint64(mask))
        while entries[ENTRY * i + 1] != 0:
            i = (i + 1) & mask
        e = ENTRY * i
        entries[e], entries[e + 1] = h, np.uint64(s + 1)
        entries[e + 2], entries[e + 3] = np.uint64(offsets[s]), np.uint64(offsets[s + 1])


def _room(a: np.ndarray, size: int) -> np.ndarray:
    """``a``, or a copy of it twice as long (or more), if it holds fewer than ``size``."""
    if size <= len(a):
        return a
    grown = np.zeros(max(2 * len(a), size), dtype=a.dtype)
    grown[:len(a)] = a
    return grown


class KeyTable:
    """Keys (ASCII) numbered 0, 1, 2, ... in the order added, found by their bytes.

    >>> table = KeyTable()
    >>> table.add("sensor-1"), table.add("sensor-2")
    (0, 1)
    >>> data = np.frombuffer(b"sensor-2sensor-9", np.uint8)
    >>> table.lookup(data, np.array([0, 8]), np.array([8, 16])).tolist()
    [1, -1]
    """

    def __init__(self) -> None:
        self.entries = np.zeros(ENTRY * FIRST_CAPACITY, dtype=np.uint64)
        self.chars = np.zeros(256, dtype=np.uint8)  # the keys back to back ...
        self.offsets = np.zeros(FIRST_CAPACITY + 1, dtype=np.int64)  # ... key s at s to s + 1
        self.count = 0

    def __len__(self) -> int:
        return self.count

    def add(self, key: str) -> int:
        """Number the next key ``key`` (not already added) and return its number."""
        return self.extend([key])

    def extend(self, keys: list[str]) -> int:
        """Number ``keys`` (none already added) in order; the first one's number."""
        raw = "".join(keys).encode("ascii")  # ASCII: a key's length is its bytes'
        first, stop = self.count, self.count + len(keys)
        start = int(self.offsets[first])
        self.offsets = _room(self.offsets, stop + 1)
        self.offsets[first + 1:stop + 1] = list(accumulate(map(len, keys), initial=start))[1:]
        self.chars = _room(self.chars, start + len(raw))
        self.chars[start:start + len(raw)] = np.frombuffer(raw, np.uint8)
        self._enter(first, stop)
        return first

    def _enter(self, first: int, stop: int) -> None:
        """Enter keys ``first`` to ``stop - 1``, whose bytes are in place; over half full, the
        table doubles (or more) and every key is entered again."""
        self.count = stop
        capacity = len(self.entries) // ENTRY
        if 2 * stop > capacity:
            while 2 * stop > capacity:
                capacity *= 2
            self.entries = np.zeros(ENTRY * capacity, dtype=np.uint64)
            first = 0
        _insert(self.entries, self.chars, self.offsets, first, stop)

    def lookup(self, data: np.ndarray, firsts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """The number of each key ``data[firsts[j]:ends[j]]`` (``data``: uint8), -1 for a key
        not added."""
        slots = np.empty(len(firsts), dtype=np.int64)
        _lookup(self.entries, self.chars, data, firsts, ends, slots)
        return slots
