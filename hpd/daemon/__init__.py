"""The daemon (``hpd.daemon``): the one scheduler and the one writer.

``hpd.daemon.app`` owns the lifecycle; the engine, the request handlers, the socket server and
the trial workers live beside it. Nothing outside ``hpd.cli`` (which starts it) imports this
package: clients reach it only through the socket.
"""

from __future__ import annotations

from hpd.daemon.app import AlreadyRunning, Daemon, serve_forever
from hpd.daemon.state import Config

__all__ = ["AlreadyRunning", "Config", "Daemon", "serve_forever"]
