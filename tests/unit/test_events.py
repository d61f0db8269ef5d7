"""The event log's vocabulary: every event survives the store's JSON unchanged."""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hpd.core import events

_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**31), 2**31) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
_metric = st.floats(allow_nan=True, allow_infinity=True)


def _field(tp: Any, name: str) -> st.SearchStrategy[Any]:
    if name == "value":
        return _metric
    text = str(tp)
    if text.startswith("dict"):
        return st.dictionaries(st.text(max_size=5), _json, max_size=3)
    if text.startswith("list[str]"):
        return st.lists(st.text(max_size=8), max_size=3)
    if text.startswith("list"):
        return st.lists(st.dictionaries(st.text(max_size=5), _json, max_size=3), max_size=3)
    base = {"int": st.integers(-(2**31), 2**31), "str": st.text(max_size=20),
            "float": st.floats(allow_nan=False, allow_infinity=False)}
    parts = [p.strip() for p in text.split("|")]
    options = [base[p] for p in parts if p in base] + ([st.none()] if "None" in parts else [])
    return st.one_of(*options)


def _events() -> st.SearchStrategy[events.Event]:
    choices = []
    for cls in events.TYPES.values():
        hints = typing.get_type_hints(cls)
        fields = {f.name: _field(hints[f.name], f.name) for f in dataclasses.fields(cls)}
        choices.append(st.builds(cls, **fields))
    return st.one_of(*choices)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return bool(a == b)


@given(_events())
def test_every_event_round_trips_through_the_stored_json(ev: events.Event) -> None:
    text = events.to_json(ev)  # what the store writes (strict JSON: no NaN literal)
    back = events.decode(ev.TYPE, json.loads(text))
    assert type(back) is type(ev)
    for f in dataclasses.fields(ev):
        assert _same(getattr(back, f.name), getattr(ev, f.name)), f.name


def test_every_type_is_listed_once_and_the_ladder_replays_four() -> None:
    assert len(events.TYPES) == len(typing.get_args(events.Event))
    assert set(events.LADDER) <= set(events.TYPES)
    for state, make in events.EXPERIMENT_STATE_EVENTS.items():
        assert ("experiment_" + state) == make().TYPE


def test_an_old_log_without_the_newer_fields_still_decodes() -> None:
    ev = events.decode("trial_created", {"index": 3, "bracket": 0, "params": {"lr": 0.1}})
    assert ev == events.TrialCreated(3, 0, {"lr": 0.1})
    assert events.decode("result", {"rung": 1, "value": "-inf"}) == events.Result(1, -math.inf)


def test_an_unknown_type_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="unknown event type 'nope'"):
        events.decode("nope", {})
