"""Wire messages between the daemon and its clients: newline-delimited JSON, versioned.

Owns the framing rules (one JSON object per line, at most ``MAX_LINE`` bytes), the request and
response shapes and their validation. Pure: no sockets, no asyncio, no clock. Every malformed
input raises ``ProtocolError``; nothing here ever raises anything else on bad bytes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from hpd.core.numbers import decode as decode_number
from hpd.core.numbers import encode as encode_number
from hpd.errors import ProtocolError

VERSION = 1
MAX_LINE = 1 << 20  # one message; a bigger one is refused and the connection closed

# The trial API's side of the contract, which the daemon checks.
# Checkpoint directories: ckpt-EPOCH-aATTEMPT, or ckpt-EPOCH-aATTEMPT-N for the same epoch again.
CHECKPOINT_NAME = re.compile(r"^ckpt-(\d{1,9})-a(\d{1,12})(?:-\d{1,4})?$")
# A state this small (serialized) is kept in the daemon's database, in the transaction that
# registers it, instead of a directory: no mkdir, no file, no fsync in the trial (3 ms a
# segment on our disks, most of a zero-cost segment's cost). The daemon offers it to warm
# workers only (``inline_max`` in the segment); a command's segment travels in its environment.
INLINE_MAX = 64 * 1024

# Operations a client may ask for. Trials use report/checkpoint/timing; the rest are for people.
OPS = frozenset(
    {
        "ping",
        "submit",
        "ls",
        "status",
        "trials",
        "best",
        "events",
        "pause",
        "resume",
        "cancel",
        "logs",
        "export",
        "stop",
        "report",
        "checkpoint",
        "timing",
        "gpus",
        "ladder",
        "metrics",
        "daemon",
        "wait",
        "retrain",
        "retrained",
        "run",  # daemon -> warm worker only
    }
)


@dataclass(frozen=True, slots=True)
class Request:
    op: str
    args: dict[str, Any] = field(default_factory=dict)
    id: int = 0


@dataclass(frozen=True, slots=True)
class Response:
    id: int
    ok: bool
    result: Any = None
    error_code: str = ""
    error_message: str = ""


def _dumps(obj: object) -> bytes:
    # allow_nan=False: a NaN must be sent as a string ("nan"), never as non-standard JSON.
    try:
        text = json.dumps(obj, separators=(",", ":"), allow_nan=False, default=_default)
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"message is not JSON-encodable: {exc}") from exc
    data = text.encode() + b"\n"
    if len(data) > MAX_LINE:
        raise ProtocolError(f"message of {len(data)} bytes exceeds the limit of {MAX_LINE}")
    return data


def _default(obj: object) -> object:
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON-encodable")


def encode_request(req: Request) -> bytes:
    return _dumps({"v": VERSION, "id": req.id, "op": req.op, "args": req.args})


def encode_response(resp: Response) -> bytes:
    if resp.ok:
        return _dumps({"v": VERSION, "id": resp.id, "ok": True, "result": resp.result})
    err = {"code": resp.error_code, "message": resp.error_message}
    return _dumps({"v": VERSION, "id": resp.id, "ok": False, "error": err})


def _load_line(line: bytes) -> dict[str, Any]:
    if len(line) > MAX_LINE:
        raise ProtocolError(f"message of {len(line)} bytes exceeds the limit of {MAX_LINE}")
    try:
        obj = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ProtocolError(f"malformed message: {exc}") from exc
    if not isinstance(obj, dict):
        raise ProtocolError("malformed message: not a JSON object")
    if obj.get("v") != VERSION:
        raise ProtocolError(f"unsupported protocol version {obj.get('v')!r}; expected {VERSION}")
    msg_id = obj.get("id", 0)
    if not isinstance(msg_id, int) or isinstance(msg_id, bool):
        raise ProtocolError("malformed message: id must be an integer")
    return obj


def decode_request(line: bytes) -> Request:
    obj = _load_line(line)
    op = obj.get("op")
    if not isinstance(op, str) or op not in OPS:
        raise ProtocolError(f"unknown op {op!r}")
    args = obj.get("args", {})
    if not isinstance(args, dict):
        raise ProtocolError("malformed message: args must be an object")
    return Request(op=op, args=args, id=obj.get("id", 0))


def decode_response(line: bytes) -> Response:
    obj = _load_line(line)
    if obj.get("ok") is True:
        return Response(id=obj.get("id", 0), ok=True, result=obj.get("result"))
    err = obj.get("error")
    if not isinstance(err, dict):
        raise ProtocolError("malformed response: error must be an object")
    return Response(
        id=obj.get("id", 0),
        ok=False,
        error_code=str(err.get("code", "error")),
        error_message=str(err.get("message", "")),
    )


__all__ = [
    "CHECKPOINT_NAME",
    "INLINE_MAX",
    "MAX_LINE",
    "OPS",
    "VERSION",
    "Request",
    "Response",
    "decode_number",
    "decode_request",
    "decode_response",
    "encode_number",
    "encode_request",
    "encode_response",
]
