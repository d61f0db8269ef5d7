"""One experiment's live state inside the daemon: its spec, ladder, sampler and trials.

Owns the translation between the ladder (trial indices, rung indices) and the store (trial ids,
events), and the in-memory mirror of each trial that the daemon needs to launch segments.
Pure apart from what it is handed (and ``model_missing``'s look-up of an installed package): no
I/O, no processes; the daemon persists the ops it returns.
"""

from __future__ import annotations

import base64
import importlib.util
import json
from dataclasses import dataclass, field
from typing import Any

from hpd.core import asha, events, numbers
from hpd.core.protocol import INLINE_MAX
from hpd.core.records import INLINE, EventRow, TrialRow
from hpd.core.space import Observation, Proposal, Sampler, make_sampler
from hpd.core.spec import Spec, spec_to_dict

TPE_MISSING = (
    'the tpe sampler needs Optuna, which this daemon cannot import: pip install "hpd[tpe]"'
    " where the daemon runs, then restart it"
)


def model_missing(spec: Spec) -> str | None:
    """Why this daemon cannot run ``spec``'s sampler, or None (only tpe needs a package)."""
    if spec.searcher.sampler != "tpe":
        return None
    try:
        found = importlib.util.find_spec("optuna") is not None
    except (ImportError, ValueError):  # a broken or blocked installation
        found = False
    return None if found else TPE_MISSING


@dataclass
class Trial:
    """What the daemon keeps in memory of one trial (the row is the truth)."""

    id: int
    exp_id: int
    idx: int
    bracket: int
    params: dict[str, Any]
    state: str
    rung: int
    target: int
    ckpt_path: str | None = None  # a directory, or records.INLINE
    ckpt_epoch: int = 0
    ckpt_data: bytes | None = None  # an inline checkpoint's state, once read or registered
    attempts: int = 0
    restarts: int = 0
    epoch: int = 0
    not_before: float = 0.0  # retry backoff

    @classmethod
    def from_row(cls, row: TrialRow) -> Trial:
        return cls(
            id=row.id,
            exp_id=row.exp_id,
            idx=row.idx,
            bracket=row.bracket,
            params=json.loads(row.params),
            state=row.state,
            rung=row.rung,
            target=row.target,
            ckpt_path=row.ckpt_path,
            ckpt_epoch=row.ckpt_epoch,
            attempts=row.attempts,
            restarts=row.restarts,
            epoch=row.epoch,
        )


def ladder_config(spec: Spec, max_trials: int) -> asha.LadderConfig:
    s = spec.searcher
    return asha.LadderConfig(
        searcher=s.name,
        mode=spec.mode,
        max_trials=max_trials,
        min_resource=s.min_resource,
        max_resource=s.max_resource,
        eta=s.eta,
        brackets=s.brackets,
    )


def sampler_capacity(sampler: Sampler, limit: int) -> int:
    """How many trials the sampler can give, up to ``limit`` (a grid may hold fewer)."""
    if sampler.params_for(limit - 1) is not None:
        return limit
    lo, hi = 0, limit - 1  # params_for(lo - 1) exists (or lo == 0); params_for(hi) does not
    while lo < hi:
        mid = (lo + hi) // 2
        if sampler.params_for(mid) is None:
            hi = mid
        else:
            lo = mid + 1
    return lo


@dataclass
class Experiment:
    id: int
    name: str
    spec: Spec
    state: str
    created_at: float
    ladder: asha.Ladder
    sampler: Sampler
    trials: dict[int, Trial] = field(default_factory=dict)  # by ladder index
    queue: list[Trial] = field(default_factory=list)  # segments ready to (re)start
    _model: Any = None  # hpd.core.tpe.TpeModel, made on the first model proposal
    _seen: dict[int, Observation] = field(default_factory=dict)  # observations() by index

    @classmethod
    def new(cls, exp_id: int, spec: Spec, state: str, created_at: float) -> Experiment:
        sampler = make_sampler(spec)
        max_trials = max(1, sampler_capacity(sampler, spec.searcher.max_trials))
        ladder = asha.Ladder(ladder_config(spec, max_trials))
        return cls(exp_id, spec.name, spec, state, created_at, ladder, sampler)

    @property
    def spec_json(self) -> str:
        return json.dumps(spec_to_dict(self.spec))  # not sorted: the space keeps its order

    def replay(self, logged: list[EventRow], rows: list[TrialRow]) -> None:
        """Rebuild the ladder from the event log and the trial mirror from the rows."""
        by_id = {r.id: r for r in rows}
        for ev in logged:
            if ev.type in events.LADDER:
                self.ladder.apply(ladder_event(ev, by_id))
        self.trials = {r.idx: Trial.from_row(r) for r in rows}

    def model(self) -> Any:
        """The tpe sampler's model (imports Optuna, so only for a spec that asks for it)."""
        if self._model is None:
            from hpd.core.tpe import TpeModel  # here: only a tpe search may import Optuna

            self._model = TpeModel(self.spec)
        return self._model

    def wants_model(self, index: int) -> bool:
        """Whether trial ``index`` is the tpe sampler's to propose (listed configs come first)."""
        return self.spec.searcher.sampler == "tpe" and index >= len(self.spec.configs)

    def observations(self) -> list[Observation]:
        """Every trial the ladder has created, in index order, as the model sees it."""
        out = []
        for idx in range(self.ladder.created):
            state, n = self.ladder.progress(idx)
            obs = self._seen.get(idx)
            if obs is None or obs.state != state or len(obs.values) != n:
                obs = self._seen[idx] = self._observe(idx)
            out.append(obs)
        return out

    def _observe(self, idx: int) -> Observation:
        results = self.ladder.results(idx)
        values = tuple(
            (self.ladder.resource_of(idx, rung), results[rung]) for rung in sorted(results)
        )
        return Observation(idx, self.trials[idx].params, self.ladder.state_of(idx), values)

    def random_proposal(self, index: int, startup: int | None = None) -> Proposal:
        """The sampler's configuration of ``index``: listed, random, grid or fixed. With
        ``startup`` (results so far), the tpe sampler's random start."""
        params = self.sampler.params_for(index)
        assert params is not None  # max_trials is capped at the sampler's capacity
        name = "configs" if index < len(self.spec.configs) else self.spec.searcher.sampler
        if startup is None:
            return Proposal(params, {"sampler": name, "summary": f"{name} #{index}"})
        options = self.spec.searcher.sampler_options
        need = options.n_startup if options is not None else 0
        return Proposal(
            params,
            {
                "sampler": "random",
                "startup": {"observations": startup, "n_startup": need},
                "summary": f"random start of tpe ({startup} of {need} results so far)",
            },
        )

    def segment(self, trial: Trial, attempt: int, checkpoint_dir: str) -> dict[str, Any]:
        """What a trial process is told about the segment it runs."""
        inline = trial.ckpt_path == INLINE
        assert not inline or trial.ckpt_data is not None, "read the inline state first"
        return {
            "experiment": self.id,
            "trial": trial.id,
            "index": trial.idx,
            "attempt": attempt,
            "params": trial.params,
            "rung": trial.rung,
            "resource": trial.target,
            "metric": self.spec.metric,
            "mode": self.spec.mode,
            "seed": self.spec.seed + trial.idx,
            "checkpoint": None if inline else trial.ckpt_path,
            "checkpoint_data": base64.b64encode(trial.ckpt_data or b"").decode()
            if inline
            else None,
            "checkpoint_epoch": trial.ckpt_epoch if trial.ckpt_path else 0,
            "checkpoint_dir": checkpoint_dir,
            # Inline checkpoints only where the segment travels over a socket (warm workers).
            "inline_max": INLINE_MAX if self.spec.entrypoint else 0,
            "subset": {
                "strategy": self.spec.subset.strategy,
                "fraction": self.spec.subset.fraction,
                "select_every": self.spec.subset.select_every,
                "per_batch": self.spec.subset.per_batch,
            },
        }


def ladder_event(ev: EventRow, trials_by_id: dict[int, TrialRow]) -> asha.Event:
    """The ladder's event for a logged one (one of ``events.LADDER``)."""
    assert ev.trial_id is not None
    idx = trials_by_id[ev.trial_id].idx
    logged = events.decode(ev.type, json.loads(ev.data))
    if isinstance(logged, events.TrialCreated):
        return asha.TrialCreated(idx, logged.bracket)
    if isinstance(logged, events.Promoted):
        return asha.TrialPromoted(idx, logged.rung, logged.to_rung)
    if isinstance(logged, events.Result):
        return asha.ResultRecorded(idx, logged.rung, logged.value)
    assert isinstance(logged, events.TrialFailed), ev.type
    return asha.TrialFailed(idx)


def reason_dict(reason: asha.PromotionReason) -> dict[str, Any]:
    return {
        "population": reason.population,
        "rank": reason.rank,
        "cutoff": reason.cutoff,
        "cutoff_value": numbers.encode(reason.cutoff_value),
        "drain": reason.drain,
    }
