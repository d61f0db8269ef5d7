"""The hpd exception tree. Owns error types only; no logic, no I/O."""

from __future__ import annotations


class HpdError(Exception):
    """An hpd operation failed."""


class SpecError(HpdError, ValueError):
    """The search spec is invalid. ``errors`` lists every problem as 'field.path: message'."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(self.errors) if self.errors else "invalid spec")


class LadderError(HpdError):
    """An event is illegal for the ladder's current state; the state is unchanged."""


class StoreError(HpdError):
    """The database refused or failed an operation."""


class GpuError(HpdError):
    """NVML failed or a GPU request cannot be satisfied."""


class ProtocolError(HpdError):
    """A wire message is malformed, oversized or of an unknown version."""


class DaemonNotRunning(HpdError):
    """No daemon answers on the socket."""


class RemoteError(HpdError):
    """The daemon answered a request with an error."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(message)
