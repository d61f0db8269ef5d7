"""The trial detail's event lines say who proposed a configuration, and from what."""

from __future__ import annotations

from tui.screens import event_line


def test_trial_created_line_shows_the_proposal_summary() -> None:
    ev = {
        "seq": 12,
        "time": 0.0,
        "type": "trial_created",
        "trial": 7,
        "index": 6,
        "params": {"lr": 0.1},
        "proposal": {
            "sampler": "tpe",
            "observations": 9,
            "by_resource": {"1": 8, "3": 1},
            "summary": "tpe from 9 results (highest resource: 8 at 1, 1 at 3), 2 running",
        },
    }
    text = event_line(ev).plain
    assert "proposed by tpe from 9 results (highest resource: 8 at 1, 1 at 3), 2 running" in text
    assert "by_resource" not in text  # the summary, not the raw table
    ev["proposal"] = {"sampler": "random", "summary": "random #6"}
    assert "proposed by random #6" in event_line(ev).plain
    del ev["proposal"]  # events written before proposals were recorded
    assert "proposed by" not in event_line(ev).plain
