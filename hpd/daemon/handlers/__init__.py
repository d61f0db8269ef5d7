"""The daemon's request handlers, one class per concern, each handed its collaborators.

``ControlHandlers`` change experiments, ``QueryHandlers`` read state, ``TrialHandlers`` hear
running trials, ``AdminHandlers`` answer about the daemon. Each exposes ``routes()`` for the
``Router``. None imports ``hpd.daemon.app``: tests drive them with fakes.
"""
