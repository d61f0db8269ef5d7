"""The foreign systems (``hpd.io``), one module each: SQLite (``store``), NVML (``gpus``),
processes (``procs``), the file layout (``paths``), the socket channel (``channel``) and
fault injection (``faults``). Each may use the core; none decides anything.
"""
