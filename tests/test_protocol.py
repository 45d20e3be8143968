"""Wire protocol verdicts: each refusal names the real problem, and no value is trained altered."""

import msgpack
import numpy as np
import pytest

from streammlp import protocol


def raw(body) -> bytes:
    return msgpack.packb(body, use_bin_type=True)


def verdict(frame: bytes) -> protocol.ProtocolError:
    with pytest.raises(protocol.ProtocolError) as caught:
        protocol.decode_samples(frame)
    return caught.value


def test_a_huge_shape_claim_is_refused_for_its_size_not_its_form():
    e = verdict(raw({"v": 1, "x": {"dtype": "<f8", "shape": [10 ** 12, 3], "data": b"\0" * 24},
                     "y": [1.0]}))
    assert e.reason == "bad_array"
    assert "expected [n] or [n, d]" not in str(e)
    assert "x.data has 24 bytes" in str(e) and "24,000,000,000,000" in str(e)


@pytest.mark.parametrize("frame,words", [
    (b"\xc1", "starts no msgpack value"),
    (raw({"v": 1, "x": [[0.5]], "y": [1.0]})[:-3], "truncated"),
    (b"\x92\x01", "truncated"),  # msgpack's own words: "2 exceeds max_array_len(1)"
    (raw({"v": 1}) + b"\x01", "bytes follow the first value"),
])
def test_undecodable_frames_say_why(frame, words):
    e = verdict(frame)
    assert e.reason == "not_msgpack" and words in str(e)


def test_a_hello_is_not_reported_as_a_message_without_x_or_y():
    e = verdict(raw({"v": 1, "hello": True}))
    assert e.reason == "bad_message" and "hello needs 'producer'" in str(e)
    assert "'y'" in str(verdict(raw({"v": 1, "x": [[1.0]]})))  # names only what is missing
    assert "'x'" not in str(verdict(raw({"v": 1, "x": [[1.0]]})))


@pytest.mark.parametrize("x", [
    [[True, False, True]],
    [[0.5, True, 0.25]],  # numpy would make this [0.5, 1.0, 0.25]
    [True, False, True],
    [[2 ** 63 - 1, 0, 0]],
    [[-(2 ** 53) - 1, 0.0, 0.0]],
    {"dtype": "<i8", "shape": [1, 3], "data": np.array([[0, 2 ** 62, 1]], "<i8").tobytes()},
])
def test_booleans_and_inexact_integers_are_not_numbers(x):
    e = verdict(raw({"v": 1, "x": x, "y": [1.0]}))
    assert e.reason == "dtype"


def test_integers_a_float_holds_exactly_are_numbers():
    m = protocol.decode_samples(raw({"v": 1, "x": [[2 ** 53, -(2 ** 53), 7]], "y": [1]}))
    assert m.x.tolist() == [[2 ** 53, -(2 ** 53), 7]]


def test_inexact_integers_among_alike_frames_get_their_own_verdict():
    frames = [protocol.encode_samples(np.array([[1, 2, v]], "<i8"), np.array([1.0]))
              for v in (3, 2 ** 62, 5)]
    template = protocol.FrameTemplate(frames[0])
    assert template.decode(b"".join(frames[::2]), [len(frames[0])] * 2) is not None
    assert template.decode(b"".join(frames), [len(frames[0])] * 3) is None


@pytest.mark.parametrize("key", ["a b", "caf\u00e9", "new\nline"])
def test_a_frame_whose_key_is_not_a_key_gets_its_own_verdict(key):
    """Among alike frames, a key with a character that keys may not have (here written with
    a raw msgpack string, as another client could) refuses the drain, so that frame is
    decoded alone and refused as bad_model, while its neighbours decode in one step."""
    good = [protocol.encode_samples(np.ones((1, 2)), [1.0], model=k) for k in ("a-1", "b.22")]
    bad = good[0][:-len("a-1") - 1] + msgpack.packb(key)
    template = protocol.FrameTemplate(good[0])
    assert list(template.decode(b"".join(good), list(map(len, good))).model) == ["a-1", "b.22"]
    assert template.decode(b"".join(good + [bad]), [len(f) for f in good + [bad]]) is None
    assert verdict(bad).reason == "bad_model"


@pytest.mark.parametrize("x", [[], {"dtype": "<f8", "shape": [0, 3], "data": b""},
                               {"dtype": "<f8", "shape": [0], "data": b""}])
def test_no_rows_is_empty(x):
    assert verdict(raw({"v": 1, "x": x, "y": []})).reason == "empty"
