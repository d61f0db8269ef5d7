"""The request table: which handler answers which op, and the checks every request's arguments
pass before a handler sees them.

Handlers register their ops here (``Router.include``); the server hands every decoded request
to ``Router.handle``. An op nobody registered, or arguments its handler does not take, are
refused with an error naming them, before anything runs. Must never hold logic about
experiments.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from hpd.core import protocol
from hpd.errors import HpdError

Handler = Callable[..., Awaitable[Any]]


class Router:
    def __init__(self) -> None:
        self._table: dict[str, tuple[Handler, inspect.Signature]] = {}

    def include(self, routes: Mapping[str, Handler]) -> None:
        for op, fn in routes.items():
            if op not in protocol.OPS:
                raise ValueError(f"{op!r} is not an op of the protocol")
            if op in self._table:
                raise ValueError(f"op {op!r} has two handlers")
            self._table[op] = (fn, inspect.signature(fn))

    @property
    def ops(self) -> frozenset[str]:
        return frozenset(self._table)

    async def handle(self, req: protocol.Request) -> Any:
        entry = self._table.get(req.op)
        if entry is None:
            raise HpdError(f"unknown op {req.op!r}")
        fn, sig = entry
        try:
            bound = sig.bind(**req.args)
        except TypeError as exc:
            raise HpdError(f"{req.op}: {exc}") from None
        return await fn(*bound.args, **bound.kwargs)


def as_int(value: Any, name: str) -> int:
    """A request's integer argument (digits in a string count), or an error naming it."""
    if isinstance(value, bool):
        raise HpdError(f"{name}: must be an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)
    raise HpdError(f"{name}: must be an integer, got {value!r}")
