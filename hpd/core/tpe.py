"""Model-based proposals (``sampler = "tpe"``): Optuna's TPESampler over the ladder's results.

Owns three mappings, and nothing of the modelling itself, which is Optuna's:
- hpd's space onto Optuna's distributions: ``uniform`` and ``loguniform`` are
  ``FloatDistribution`` (``log`` for the latter), ``int`` is ``IntDistribution`` with its
  ``log``, and ``choice`` is a ``CategoricalDistribution`` over the values' positions (so
  ``True``, ``1`` and ``"1"`` stay three values and every value comes back with its own type);
- the ladder's trials onto Optuna's trials, the way Optuna's own pruners leave them: a trial
  with a top-rung result is COMPLETE with that value; one stopped, paused or failed after a rung
  result is PRUNED, its rung results as intermediate values keyed by resource, so TPE ranks it
  by the highest rung reached, then its value there (below every trial that went higher);
  a trial in flight or queued is RUNNING, which ``constant_liar`` puts in the bad group; a trial
  that failed before any result is FAIL (ignored). A non-finite result is NaN to Optuna, which
  ranks it last (the ladder's rule too);
- Optuna's storage onto an in-memory list: ``_Served`` serves the trials it is given as they
  are, with no copy, and records the one trial each proposal asks.

A proposal is a pure function of (spec, trial index, observations): its sampler is seeded
from (seed, index) and built afresh, so nothing here ever needs saving, and a restarted daemon
that replays the same results proposes the same configurations.

The only module that imports ``optuna``, and only once a spec asks for ``tpe`` (``import hpd``
never imports it). It must never do I/O, read a clock or touch the daemon's state: the daemon
hands it immutable observations and runs it off its event loop.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Container, Mapping, Sequence
from datetime import datetime
from typing import Any, Final

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.storages import BaseStorage
from optuna.study import StudyDirection
from optuna.study._frozen import FrozenStudy
from optuna.trial import FrozenTrial, TrialState

from hpd.core.space import Observation, Proposal, results_of
from hpd.core.spec import ParamSpec, Scalar, Spec, TpeOptions

__all__ = ["TpeModel", "distributions", "proposal_seed"]

# Optuna marks multivariate and constant_liar experimental and logs every trial it creates.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
optuna.logging.set_verbosity(optuna.logging.WARNING)

_EPOCH: Final = datetime(2000, 1, 1)  # FrozenTrial wants start times; TPE never reads them


def distributions(space: Sequence[ParamSpec]) -> dict[str, BaseDistribution]:
    """hpd's parameters as Optuna distributions (choices by position)."""
    out: dict[str, BaseDistribution] = {}
    for p in space:
        if p.type == "choice":
            out[p.name] = CategoricalDistribution(tuple(range(len(p.values or ()))))
        elif p.type == "int":
            out[p.name] = IntDistribution(int(p.low or 0), int(p.high or 0), log=p.log)
        else:
            out[p.name] = FloatDistribution(
                float(p.low or 0.0), float(p.high or 0.0), log=p.type == "loguniform"
            )
    return out


def _choice_key(value: Scalar) -> tuple[bool, Scalar]:
    return isinstance(value, bool), value  # as the spec tells duplicates apart


class _Codec:
    """Converts one configuration between hpd's values and Optuna's external values."""

    def __init__(self, space: Sequence[ParamSpec]) -> None:
        self._space = tuple(space)
        self._positions = {
            p.name: {_choice_key(v): i for i, v in enumerate(p.values or ())}
            for p in space
            if p.type == "choice"
        }

    def to_optuna(self, params: Mapping[str, Scalar]) -> dict[str, Any] | None:
        """None when a value lies outside the space (nothing parsed can, but a model must
        never fail the search over one odd row)."""
        out: dict[str, Any] = {}
        for p in self._space:
            if p.name not in params:
                return None
            v = params[p.name]
            if p.type == "choice":
                pos = self._positions[p.name].get(_choice_key(v))
                if pos is None:
                    return None
                out[p.name] = pos
            elif _in_bounds(v, p):
                out[p.name] = int(v) if p.type == "int" else float(v)
            else:
                return None
        return out

    def from_optuna(self, params: Mapping[str, Any]) -> dict[str, Scalar]:
        out: dict[str, Scalar] = {}
        for p in self._space:
            v = params[p.name]
            if p.type == "choice":
                out[p.name] = (p.values or ())[int(v)]
            elif p.type == "int":
                out[p.name] = min(max(int(v), int(p.low or 0)), int(p.high or 0))
            else:
                out[p.name] = min(max(float(v), float(p.low or 0.0)), float(p.high or 0.0))
        return out


def _in_bounds(v: Scalar, p: ParamSpec) -> bool:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return False
    return float(p.low or 0) <= v <= float(p.high or 0)


def _nan_if_not_finite(value: float) -> float:
    return value if value - value == 0.0 else float("nan")  # inf - inf and nan - nan are nan


def _frozen(
    obs: Observation, params: dict[str, Any], dists: dict[str, BaseDistribution]
) -> FrozenTrial:
    inter = {resource: _nan_if_not_finite(v) for resource, v in obs.values}
    state, value = TrialState.PRUNED, None
    if obs.state == "running":
        state = TrialState.RUNNING
    elif obs.state == "completed" and obs.values and inter[obs.values[-1][0]] == obs.values[-1][1]:
        state, value = TrialState.COMPLETE, obs.values[-1][1]
    elif not obs.values:
        state = TrialState.FAIL
    return FrozenTrial(
        number=obs.index,
        state=state,
        value=value,
        datetime_start=_EPOCH,
        datetime_complete=None if state == TrialState.RUNNING else _EPOCH,
        params=params,
        distributions=dists,
        user_attrs={},
        system_attrs={},
        intermediate_values=inter,
        trial_id=obs.index,
    )


class _Served(BaseStorage):
    """One study whose past trials are given (numbered 0..n-1, served without copying) and
    whose only new trial is the one a proposal asks. Optuna reads it; nothing else writes."""

    def __init__(self, direction: StudyDirection, past: list[FrozenTrial]) -> None:
        self._direction = direction
        self._trials = past
        self._user_attrs: dict[str, Any] = {}
        self._system_attrs: dict[str, Any] = {}

    # ---- the study
    def create_new_study(
        self, directions: Sequence[StudyDirection], study_name: str | None = None
    ) -> int:
        return 0

    def delete_study(self, study_id: int) -> None:
        raise NotImplementedError("a served study is never deleted")

    def set_study_user_attr(self, study_id: int, key: str, value: Any) -> None:
        self._user_attrs[key] = value

    def set_study_system_attr(self, study_id: int, key: str, value: Any) -> None:
        self._system_attrs[key] = value

    def get_study_id_from_name(self, study_name: str) -> int:
        return 0

    def get_study_name_from_id(self, study_id: int) -> str:
        return "hpd"

    def get_study_directions(self, study_id: int) -> list[StudyDirection]:
        return [self._direction]

    def get_study_user_attrs(self, study_id: int) -> dict[str, Any]:
        return self._user_attrs

    def get_study_system_attrs(self, study_id: int) -> dict[str, Any]:
        return self._system_attrs

    def get_all_studies(self) -> list[FrozenStudy]:
        return [
            FrozenStudy(
                study_name="hpd",
                direction=self._direction,
                user_attrs=self._user_attrs,
                system_attrs=self._system_attrs,
                study_id=0,
            )
        ]

    # ---- trials
    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        number = len(self._trials)
        self._trials.append(
            FrozenTrial(
                number=number,
                state=TrialState.RUNNING,
                value=None,
                datetime_start=_EPOCH,
                datetime_complete=None,
                params={},
                distributions={},
                user_attrs={},
                system_attrs={},
                intermediate_values={},
                trial_id=number,
            )
        )
        return number

    def set_trial_param(
        self,
        trial_id: int,
        param_name: str,
        param_value_internal: float,
        distribution: BaseDistribution,
    ) -> None:
        trial = self._trials[trial_id]
        trial.params = {
            **trial.params,
            param_name: distribution.to_external_repr(param_value_internal),
        }
        trial.distributions = {**trial.distributions, param_name: distribution}

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        raise NotImplementedError("hpd tells results through its ladder, not through Optuna")

    def set_trial_intermediate_value(self, trial_id: int, step: int, value: float) -> None:
        raise NotImplementedError("hpd tells results through its ladder, not through Optuna")

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        trial = self._trials[trial_id]
        trial.user_attrs = {**trial.user_attrs, key: value}

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        trial = self._trials[trial_id]
        trial.system_attrs = {**trial.system_attrs, key: value}

    def get_trial(self, trial_id: int) -> FrozenTrial:
        return self._trials[trial_id]

    def get_all_trials(
        self,
        study_id: int,
        deepcopy: bool = True,
        states: Container[TrialState] | None = None,
    ) -> list[FrozenTrial]:
        # TPE asks with deepcopy=False; nothing that asks for copies runs on a served study.
        if states is None:
            return list(self._trials)
        return [t for t in self._trials if t.state in states]


class _KnownSpaceTPE(optuna.samplers.TPESampler):
    """TPESampler told the search space instead of inferring it: every hpd trial has the
    same distributions, and inferring them costs a pass over all trials per proposal."""

    def __init__(self, space: dict[str, BaseDistribution], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._known = {name: d for name, d in space.items() if not d.single()}

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return dict(self._known) if self._multivariate else {}


def proposal_seed(seed: int, index: int) -> int:
    """The seed of trial ``index``'s proposal: stable across runs, platforms and restarts."""
    digest = hashlib.sha256(f"hpd-tpe:{seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


class TpeModel:
    """Proposes configurations from observations with Optuna's TPE. Keeps only a cache of
    Optuna trials, each rebuilt whenever its observation changes (never state to save)."""

    def __init__(self, spec: Spec) -> None:
        options = spec.searcher.sampler_options
        self.options: Final = options if options is not None else TpeOptions()
        self._seed = spec.seed
        self._dists = distributions(spec.space)
        self._codec = _Codec(spec.space)
        self._direction = StudyDirection.MAXIMIZE if spec.mode == "max" else StudyDirection.MINIMIZE
        self._cache: dict[int, tuple[Observation, FrozenTrial]] = {}

    def ready(self, observations: Sequence[Observation]) -> bool:
        """Whether enough trials have a rung result (and are not running again, as Optuna
        counts finished trials) for the model to propose."""
        return results_of(observations) >= self.options.n_startup

    def propose(self, index: int, observations: Sequence[Observation]) -> Proposal:
        """The configuration of trial ``index`` given every other trial's observation.

        ``observations`` must be the trials 0..index-1, in index order (the study's numbering
        is the trial index, which TPE's recency weights read)."""
        if len(observations) != index or any(o.index != i for i, o in enumerate(observations)):
            raise ValueError("observations must be trials 0..index-1 in order")
        past = [self._trial(obs) for obs in observations]
        study = optuna.create_study(
            storage=_Served(self._direction, past),
            sampler=self._sampler(index),
            direction=self._direction,
        )
        asked = study.ask(fixed_distributions=self._dists)
        return Proposal(self._codec.from_optuna(asked.params), self._info(observations))

    def _sampler(self, index: int) -> optuna.samplers.TPESampler:
        o = self.options
        return _KnownSpaceTPE(
            self._dists,
            seed=proposal_seed(self._seed, index),
            n_startup_trials=0,  # ``ready`` decides; hpd's random sampler fills the startup
            multivariate=o.multivariate,
            constant_liar=o.constant_liar,
            n_ei_candidates=o.n_ei_candidates,
        )

    def _trial(self, obs: Observation) -> FrozenTrial:
        cached = self._cache.get(obs.index)
        if cached is not None and (cached[0] is obs or cached[0] == obs):
            return cached[1]
        params = self._codec.to_optuna(obs.params)
        if params is None:  # outside the space: served as a failed trial, never modelled
            trial = _frozen(Observation(obs.index, {}, "failed", ()), {}, {})
        else:
            trial = _frozen(obs, params, self._dists)
        self._cache[obs.index] = (obs, trial)
        return trial

    def _info(self, observations: Sequence[Observation]) -> dict[str, Any]:
        by_resource: dict[int, int] = {}
        complete = running = 0
        for obs in observations:
            if obs.state == "running":
                running += 1
            elif obs.values:
                top = obs.values[-1][0]
                by_resource[top] = by_resource.get(top, 0) + 1
                complete += obs.state == "completed"
        n = sum(by_resource.values())
        rungs = ", ".join(f"{c} at {r}" for r, c in sorted(by_resource.items()))
        return {
            "sampler": "tpe",
            "observations": n,
            "completed": complete,
            "running": running,
            # How many observations reached each resource as their highest (TPE ranks by it).
            "by_resource": {str(r): c for r, c in sorted(by_resource.items())},
            "summary": f"tpe from {n} results (highest resource: {rungs}), {running} running",
        }
