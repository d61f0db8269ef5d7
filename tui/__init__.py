"""hpd's terminal UI: watch and steer searches over SSH (``hpd tui``).

The only package that imports Textual. It talks to the daemon only through ``hpd.client``
(never the SQLite file): polling workers fetch, post messages, and widgets render.
"""
