"""The trial and experiment lifecycles: every state, every legal move, and which are final.

The daemon changes a trial's state in a handful of places (a segment starts, ends with a
result, crashes, is interrupted, is promoted, is requeued after a restart, its search ends or
is cancelled); each asks here for the move, so an illegal one fails loudly at the point it is
made instead of surfacing as a stuck trial later. Pure: states are strings as the store keeps
them; nothing here writes or remembers anything.
"""

from __future__ import annotations

from typing import Literal, get_args

TrialState = Literal["queued", "running", "paused", "completed", "stopped", "failed", "cancelled"]
ExperimentState = Literal["running", "paused", "completed", "failed", "cancelled"]

TRIAL_STATES: tuple[str, ...] = get_args(TrialState)
EXPERIMENT_STATES: tuple[str, ...] = get_args(ExperimentState)

FINAL_TRIAL_STATES = frozenset({"completed", "failed", "stopped", "cancelled"})
FINAL_EXPERIMENT_STATES = frozenset({"completed", "failed", "cancelled"})
SEARCHING = ("running", "paused")  # an experiment still searching (not yet final)

# A search that ends stops its waiting trials; a cancelled one cancels them.
WAITING = ("queued", "paused")

TRIAL_MOVES: dict[str, frozenset[str]] = {
    "queued": frozenset({"running", "cancelled", "stopped"}),
    # a result (completed at the top, paused below it, stopped if not finite), an interruption
    # or a retry (queued), giving up (failed), or its search was cancelled meanwhile
    "running": frozenset({"completed", "paused", "stopped", "queued", "failed", "cancelled"}),
    "paused": frozenset({"queued", "stopped", "cancelled"}),  # promoted, or its search ended
    **{s: frozenset() for s in FINAL_TRIAL_STATES},
}

EXPERIMENT_MOVES: dict[str, frozenset[str]] = {
    "running": frozenset({"paused", "cancelled", "completed", "failed"}),
    "paused": frozenset({"running", "cancelled"}),
    **{s: frozenset() for s in FINAL_EXPERIMENT_STATES},
}

# The verb a person uses for each move (error messages say what could not be done).
VERBS = {"paused": "pause", "running": "resume", "cancelled": "cancel"}


class IllegalMove(AssertionError):
    """A move the lifecycle does not allow: a bug in the caller, never bad input."""


def trial_move(current: str, new: str) -> str:
    """``new``, if a trial in ``current`` may move there."""
    if new not in TRIAL_MOVES.get(current, frozenset()):
        raise IllegalMove(f"a {current} trial cannot become {new}")
    return new


def experiment_move(current: str, new: str) -> str:
    """``new``, if an experiment in ``current`` may move there."""
    if new not in EXPERIMENT_MOVES.get(current, frozenset()):
        raise IllegalMove(f"a {current} experiment cannot become {new}")
    return new


def after_result(*, top: bool, finite: bool) -> TrialState:
    """A rung result: done at the top rung, waiting for a promotion below it, and stopped for
    good if it is NaN or infinite (it can never be promoted)."""
    if top:
        return "completed"
    return "paused" if finite else "stopped"


def after_crash(*, give_up: bool) -> TrialState:
    return "failed" if give_up else "queued"


def after_interruption(*, cancelled: bool) -> TrialState:
    return "cancelled" if cancelled else "queued"


def search_end(*, any_result: bool) -> ExperimentState:
    """A search whose ladder is done: completed if any trial produced a result."""
    return "completed" if any_result else "failed"
