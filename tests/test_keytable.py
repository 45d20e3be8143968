"""The compiled key table against a dict, and a drain's keys found straight from its frames."""

import numpy as np
from hypothesis import given, settings, strategies as st

from streammlp import MLP, protocol
from streammlp.fleet import Fleet
from streammlp.keytable import KeyTable

KEY = st.text(protocol.KEY_CHARACTERS, min_size=1, max_size=128)


def spans(keys: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lengths = np.array([len(k) for k in keys], dtype=np.int64)
    ends = np.cumsum(lengths)
    return np.frombuffer("".join(keys).encode(), np.uint8), ends - lengths, ends


@settings(max_examples=200, deadline=None)
@given(st.lists(KEY, unique=True, max_size=300), st.lists(KEY, max_size=50), st.booleans())
def test_the_table_finds_what_a_dict_finds(added, asked, at_once):
    table, oracle = KeyTable(), {key: slot for slot, key in enumerate(added)}
    if at_once:
        assert table.extend(added) == 0
    else:
        assert [table.add(key) for key in added] == list(range(len(added)))
    # Every key added, prefixes and extensions of them, and keys never added.
    asked = asked + added + [k[:-1] for k in added if len(k) > 1] + [k + "x" for k in added[:20]]
    assert table.lookup(*spans(asked)).tolist() == [oracle.get(k, -1) for k in asked]
    assert len(table) == len(added)


def test_many_keys_through_many_doublings():
    table = KeyTable()
    keys = [f"sensor-{i}" for i in range(5000)]
    for key in keys[:2500]:
        table.add(key)
    table.extend(keys[2500:])
    assert table.lookup(*spans(keys[::-1])).tolist() == list(range(4999, -1, -1))
    assert table.lookup(*spans(["sensor-5000", "sensor-", "ensor-1"])).tolist() == [-1, -1, -1]


def test_a_drain_s_keys_are_found_from_its_bytes(rng):
    """FrameTemplate.decode gives the keys as spans of the drain; the fleet finds each
    model's slot from them as it does from the key itself."""
    fleet = Fleet(MLP([3, 4, 1]), seed=0)
    known = [fleet.slot(f"m-{i}") for i in range(40)]
    keys = [f"m-{i}" for i in rng.integers(0, 60, 200)]  # a third of them new
    frames = [protocol.encode_samples(rng.normal(size=(1, 3)), [1.0], model=k) for k in keys]
    run = protocol.FrameTemplate(frames[0]).decode(b"".join(frames), [len(f) for f in frames])
    assert isinstance(run.model, protocol.KeySpans) and list(run.model) == keys
    assert fleet.find(run.model).tolist() == [fleet.slots.get(k, -1) for k in keys]
    assert len(known) == len(fleet) == 40
    again = Fleet.from_state(fleet.state())  # a resumed fleet finds them too
    assert again.find(run.model).tolist() == [fleet.slots.get(k, -1) for k in keys]
