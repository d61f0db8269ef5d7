"""The pure core (``hpd.core``): spec, space, ladder, lifecycle, records, protocol, ranking.

Every module here is a function of its inputs: no asyncio, no sockets, no processes, no
SQLite, no NVML, no clock, and nothing from the layers above (``hpd.io``, ``hpd.daemon``,
``hpd.client``, ``hpd.trial``). The import contracts in ``pyproject.toml`` check it.
"""
