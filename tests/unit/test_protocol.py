"""The wire protocol: framing, versions, and total decoding (ProtocolError, never a crash)."""

from __future__ import annotations

import contextlib
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hpd.core import protocol
from hpd.errors import ProtocolError


def test_request_round_trip() -> None:
    """A request survives encode/decode."""
    req = protocol.Request("status", {"exp": 3}, 7)
    assert protocol.decode_request(protocol.encode_request(req)) == req


def test_response_round_trip_error() -> None:
    """Errors carry a code and a message."""
    resp = protocol.Response(2, False, None, "SpecError", "name: required")
    assert protocol.decode_response(protocol.encode_response(resp)) == resp


@pytest.mark.parametrize(
    "line",
    [b"", b"{", b"[]", b'{"v": 2, "op": "ping"}', b'{"v": 1, "op": "nope"}', b'{"v": 1, "op": "ping", "args": []}', b"\xff\xfe", b'{"v": 1, "id": true, "op": "ping"}'],
)
def test_malformed_requests_raise_protocol_error(line: bytes) -> None:
    """Every malformed line is a ProtocolError."""
    with pytest.raises(ProtocolError):
        protocol.decode_request(line)


def test_oversized_message_refused() -> None:
    """Messages above MAX_LINE are refused both ways."""
    with pytest.raises(ProtocolError):
        protocol.encode_request(protocol.Request("ping", {"x": "a" * protocol.MAX_LINE}))
    with pytest.raises(ProtocolError):
        protocol.decode_request(b" " * (protocol.MAX_LINE + 1))


def test_nan_is_never_sent_as_bare_json() -> None:
    """A NaN in a message is refused: metrics travel as 'nan' strings."""
    with pytest.raises(ProtocolError):
        protocol.encode_request(protocol.Request("report", {"v": math.nan}))
    assert protocol.encode_number(math.nan) == "nan"
    assert math.isinf(protocol.decode_number("-inf"))
    with pytest.raises(ProtocolError):
        protocol.decode_number(True)


@given(st.binary(max_size=300))
def test_decoding_is_total(data: bytes) -> None:
    """Random bytes decode or raise ProtocolError; nothing else."""
    with contextlib.suppress(ProtocolError):
        protocol.decode_request(data)
