"""One command for the whole subset-selection study: four searches, their retraining, a report.

``python -m examples.subset_study.run [--scale smoke|cpu|gpu] [--out DIR] [...]``

Owns the study's orchestration and reporting, nothing about training (``train.py``) or
scheduling (the daemon). It
1. connects to the running daemon (``--state-dir``, else ``$HPD_HOME``/the default); if none
   answers it starts a private one in a temporary state dir (``hpd start --foreground``, as
   ``bench/common.py`` does) and stops it at the end, unless ``--no-start`` says not to;
2. loads the four specs beside this file, scales them (``Scale``: configurations, epochs,
   retrain epochs, model width, sample caps) by editing the spec dicts, never the files, and
   submits all four at once, so the daemon keeps every slot busy across them;
3. retrains each search's top configurations on full data (``Experiment.retrain``) as soon as
   that search completes;
4. writes ``results.json`` (everything), ``results.md`` (the seeds' table for our data) and
   ``study.png`` (matplotlib, Agg; skipped with a message when matplotlib is missing).

Time per configuration is each trial's ``run_s`` (seconds it ran, summed over its segments):
trials of all four searches run side by side on equal slots (one core, or one GPU slot,
each), so the per-trial times compare even though the searches overlap in wall time.

Must never: change the spec files, train anything itself, or stop a daemon it did not start.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import platform
import signal
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpd.client import FINAL, Client, Experiment
from hpd.client.local import LocalDaemon
from hpd.core.spec import load_spec_file, spec_to_dict
from hpd.errors import HpdError

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent

# (key, label, the original study's avg. config run time in s, its best accuracy after retrain)
SCENARIOS: tuple[tuple[str, str, float, float], ...] = (
    ("full50", "Full data, 50 epochs", 1465.0, 0.925),
    ("full25", "Full data, 25 epochs", 734.0, 0.933),
    ("random", "Random 12.5%", 210.0, 0.911),
    ("gradmatch", "Grad-Match 12.5%", 262.0, 0.925),
)
ORIGINAL_EPOCHS = 50  # full50's epochs; full25 has half, the subset scenarios as many
ORIGINAL_SELECT_EVERY = 20
ORIGINAL_STEP_SIZE_HIGH = 50


@dataclass(frozen=True)
class Scale:
    """How big a run is. ``epochs`` is full50's max_resource (the others follow it)."""

    name: str
    configs: int
    epochs: int
    retrain_top: int
    retrain_epochs: int
    width: int
    train_samples: int  # 0 = all
    val_samples: int
    test_samples: int  # 0 = all
    batch_size: int = 128

    def epochs_of(self, key: str) -> int:
        return max(1, self.epochs // 2) if key == "full25" else self.epochs

    def scaled(self, value: int) -> int:
        """An epoch count of the original study (50 epochs), scaled to this run's epochs."""
        return max(1, round(value * self.epochs / ORIGINAL_EPOCHS))


SCALES = {
    # The test's scale: seconds, proves the plumbing, measures nothing.
    "smoke": Scale(
        "smoke", configs=3, epochs=2, retrain_top=1, retrain_epochs=1, width=4,
        train_samples=384, val_samples=256, test_samples=256, batch_size=64,
    ),
    # About 10 minutes on 2 CPU cores (see README.md): small, but it learns. Batch 32, not
    # 128, so that a 12.5% subset (375 samples) still takes a dozen optimizer steps an epoch.
    "cpu": Scale(
        "cpu", configs=9, epochs=6, retrain_top=2, retrain_epochs=8, width=8,
        train_samples=3000, val_samples=1000, test_samples=2000, batch_size=32,
    ),
    # The original study's sizes (hours on one GPU).
    "gpu": Scale(
        "gpu", configs=50, epochs=50, retrain_top=8, retrain_epochs=100, width=64,
        train_samples=0, val_samples=5000, test_samples=0,
    ),
}  # fmt: skip
ORIGINAL = SCALES["gpu"]
WARMUP_TRIALS = 8  # at least one per slot on usual machines (the daemon does not say its slots)


def scaled_spec(
    key: str, scale: Scale, *, dataset: str | None, device: str | None
) -> dict[str, Any]:
    """The scenario's spec file as a dict, resized to ``scale`` (the file is not touched)."""
    spec: dict[str, Any] = spec_to_dict(load_spec_file(str(HERE / f"{key}.toml")))
    spec["name"] = f"{spec['name']}-{scale.name}"
    epochs = scale.epochs_of(key)
    searcher = spec["searcher"]
    searcher.update(max_trials=scale.configs, max_resource=epochs)
    searcher["min_resource"] = min(int(searcher["min_resource"]), epochs)
    # StepLR's step size is in epochs: keep its range in proportion to the run's length, or
    # short runs would never decay the learning rate at all.
    spec["space"]["step_size"]["high"] = scale.scaled(ORIGINAL_STEP_SIZE_HIGH)
    if spec["subset"].get("strategy", "none") != "none":
        spec["subset"]["select_every"] = scale.scaled(ORIGINAL_SELECT_EVERY)
    env = spec.setdefault("env", {})
    env.update(
        STUDY_WIDTH=str(scale.width),
        STUDY_TRAIN_SAMPLES=str(scale.train_samples),
        STUDY_VAL_SAMPLES=str(scale.val_samples),
        STUDY_TEST_SAMPLES=str(scale.test_samples),
        STUDY_BATCH_SIZE=str(scale.batch_size),
    )
    if dataset:
        env["STUDY_DATASET"] = dataset
    if device:
        env["STUDY_DEVICE"] = device
    return spec


def scale_factors(scale: Scale, dataset: str) -> list[tuple[str, str, str, str]]:
    """(what, original, this run, factor) rows for the console and results.md."""
    n_train = {"fashion-mnist": 60000, "cifar10": 50000}.get(dataset, 0) - scale.val_samples
    train = scale.train_samples or n_train

    def row(what: str, orig: float, ours: float) -> tuple[str, str, str, str]:
        factor = f"{ours / orig:.3g}x" if orig else "-"
        return (what, f"{orig:g}", f"{ours:g}", factor)

    return [
        row("configurations per scenario", ORIGINAL.configs, scale.configs),
        row("epochs (full50, random, gradmatch)", ORIGINAL.epochs, scale.epochs),
        row("epochs (full25)", ORIGINAL.epochs_of("full25"), scale.epochs_of("full25")),
        row("select_every (epochs)", ORIGINAL_SELECT_EVERY, scale.scaled(ORIGINAL_SELECT_EVERY)),
        row("step_size range high", ORIGINAL_STEP_SIZE_HIGH, scale.scaled(ORIGINAL_STEP_SIZE_HIGH)),
        row("retrained configurations", ORIGINAL.retrain_top, scale.retrain_top),
        row("retrain epochs", ORIGINAL.retrain_epochs, scale.retrain_epochs),
        row("ResNet-18 width", ORIGINAL.width, scale.width),
        row("training samples (original: CIFAR-10)", 50000, train),
    ]


# -- the daemon ------------------------------------------------------------------------------


def _answers(client: Client) -> bool:
    try:
        client.ping()
        return True
    except (HpdError, OSError):
        return False


@contextlib.contextmanager
def private_daemon(
    cpu_slots: int | None, log: Path, slots_per_gpu: int | None = None
) -> Iterator[Client]:
    """A daemon of its own in a temporary state dir (``hpd.client.local``), stopped on exit."""
    with tempfile.TemporaryDirectory(prefix="hpd-study-") as tmp:
        args = ["--cpu-slots", str(cpu_slots)] if cpu_slots else []
        if slots_per_gpu:
            args += ["--slots-per-gpu", str(slots_per_gpu)]
        # The trials' settings (HPD_FAKE_GPUS, data paths) pass on; --state-dir says where.
        env = {k: v for k, v in os.environ.items() if k.startswith("HPD_") and k != "HPD_HOME"}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
        with LocalDaemon(Path(tmp) / "state", args=args, extra_env=env, log=log, cwd=REPO) as d:
            client = d.client()
            try:
                yield client
            finally:
                client.close()


# -- running the study -----------------------------------------------------------------------


def _num(v: Any) -> float | None:
    """A metric as the daemon sends it (a number, or "nan"/"inf"/"-inf"), as a float."""
    if v is None:
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _finite(v: float | None) -> bool:
    return v is not None and math.isfinite(v)


class Clock:
    def __init__(self) -> None:
        self.t0 = time.monotonic()

    def say(self, msg: str) -> None:
        print(f"[{time.monotonic() - self.t0:7.1f}s] {msg}", flush=True)


def _search_summary(exp: Experiment, status: dict[str, Any]) -> dict[str, Any]:
    trials = exp.trials()
    run_s = [float(t.get("run_s") or 0.0) for t in trials]
    best = status.get("best") or {}
    subset = [t["subset"] for t in trials if t.get("subset")]
    return {
        "experiment": exp.id,
        "state": status["state"],
        "configurations": len(trials),
        "avg_config_s": sum(run_s) / len(run_s) if run_s else None,
        "total_trial_s": sum(run_s),
        "wall_s": status.get("elapsed_s"),
        "epochs_trained": sum(int(t.get("epoch") or 0) for t in trials),
        "best_val_acc": _num(best.get("value")),
        "best_trial": best.get("trial"),
        "best_params": best.get("params"),
        "selection_s_total": sum(float(s.get("selection_total_s") or 0.0) for s in subset),
        "trials": [
            {k: t.get(k) for k in ("id", "state", "rung", "epoch", "params", "results", "run_s")}
            | ({"error": t["error"]} if t.get("error") else {})
            for t in trials
        ],
    }


def _retrain_summary(exp: Experiment, status: dict[str, Any]) -> dict[str, Any]:
    rows = exp.retrain_results()
    scored = [r for r in rows if _finite(_num(r.get("value")))]
    # The configuration to deploy is chosen on validation accuracy, never on test accuracy.
    chosen = max(scored, key=lambda r: _num(r["value"]) or 0.0) if scored else None
    tests = [_num(r.get("metrics", {}).get("test_acc")) for r in rows]
    tests_ok = [t for t in tests if t is not None and _finite(t)]
    return {
        "experiment": exp.id,
        "state": status["state"],
        "rows": rows,
        "chosen_trial": chosen["trial"] if chosen else None,
        "val_acc": _num(chosen["value"]) if chosen else None,
        "test_acc": _num(chosen.get("metrics", {}).get("test_acc")) if chosen else None,
        "max_test_acc": max(tests_ok) if tests_ok else None,
    }


def warm_up(client: Client, scale: Scale, *, dataset: str | None, device: str | None) -> None:
    """A throwaway search (a few 1-epoch trials on a tiny width and sample) before the study,
    so each slot's warm worker has imported torch, decoded the dataset and (on a GPU) set up
    CUDA before any timed trial runs; else the first trials on each slot pay for it."""
    tiny = dataclasses.replace(
        scale, name="warmup", configs=WARMUP_TRIALS, epochs=1, width=4, train_samples=256,
        val_samples=min(scale.val_samples, 256) or 256, test_samples=256, batch_size=64,
    )  # fmt: skip
    spec = scaled_spec("full25", tiny, dataset=dataset, device=device)
    spec["name"] = "subset-study-warmup"
    spec["resources"]["max_concurrent"] = WARMUP_TRIALS
    st = client.submit(spec).wait()
    if st["state"] != "completed":
        raise RuntimeError(f"the warm-up search {st['id']} ended {st['state']}: see hpd trials")


class _Study:
    """The four searches and their retrainings in flight, polled until all have ended."""

    def __init__(self, client: Client, scale: Scale, clock: Clock) -> None:
        self.client, self.scale, self.clock = client, scale, clock
        self.searches: dict[str, Experiment] = {}
        self.retrains: dict[str, Experiment] = {}
        self.results: dict[str, dict[str, Any]] = {key: {} for key, *_ in SCENARIOS}

    def submit(self, dataset: str | None, device: str | None) -> None:
        for key, label, *_ in SCENARIOS:
            spec = scaled_spec(key, self.scale, dataset=dataset, device=device)
            self.searches[key] = self.client.submit(spec)
            self.clock.say(f"{label}: submitted as experiment {self.searches[key].id}")

    def poll(self) -> list[Experiment]:
        """Collect what has ended (retraining each completed search); return what has not."""
        active: list[Experiment] = []
        for key, exp in self.searches.items():
            if "search" not in self.results[key]:
                st = exp.status()
                if st["state"] in FINAL:
                    self._search_ended(key, exp, st)
                else:
                    active.append(exp)
        for key, exp in self.retrains.items():
            if "retrain" not in self.results[key]:
                st = exp.status()
                if st["state"] in FINAL:
                    self.results[key]["retrain"] = _retrain_summary(exp, st)
                    self.clock.say(f"{key}: retraining {st['state']}")
                else:
                    active.append(exp)
        return active

    def _search_ended(self, key: str, exp: Experiment, st: dict[str, Any]) -> None:
        self.results[key]["search"] = summary = _search_summary(exp, st)
        self.clock.say(f"{key}: search {st['state']} ({st['trials']})")
        for err in sorted({t["error"] for t in summary["trials"] if t.get("error")}):
            self.clock.say(f"{key}: a trial failed: {err} (see `hpd logs TRIAL`)")
        if st["state"] == "completed" and st.get("best"):
            top, epochs = self.scale.retrain_top, self.scale.retrain_epochs
            self.retrains[key] = exp.retrain(top, epochs)
            self.clock.say(
                f"{key}: retraining top {top} for {epochs} epochs on full data "
                f"as experiment {self.retrains[key].id}"
            )

    def wait(self, timeout_s: float | None) -> None:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        last_progress = time.monotonic()
        while active := self.poll():
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"the study did not finish in {timeout_s} s")
            if time.monotonic() - last_progress >= 60:
                last_progress = time.monotonic()
                busy = ", ".join(str(e.id) for e in active)
                self.clock.say(f"running: experiments {busy}; load {os.getloadavg()[0]:.2f}")
            # A long poll on one of them: returns as soon as it ends, else after a few seconds.
            with contextlib.suppress(TimeoutError):
                active[0].wait(timeout=5)


def run_study(
    client: Client,
    scale: Scale,
    out: Path,
    *,
    dataset: str | None = None,
    device: str | None = None,
    clock: Clock | None = None,
    timeout_s: float | None = None,
    warmup: bool = True,
) -> dict[str, Any]:
    """Submit the four searches, retrain each one's top configurations, write the report."""
    clock = clock or Clock()
    out.mkdir(parents=True, exist_ok=True)
    if warmup:
        warm_up(client, scale, dataset=dataset, device=device)
        clock.say("warm-up done: every slot's worker has torch and the data loaded")
    load_before = os.getloadavg()
    t_start = time.time()
    study = _Study(client, scale, clock)
    study.submit(dataset, device)
    study.wait(timeout_s)
    name = dataset or "fashion-mnist"
    report: dict[str, Any] = {
        "scale": dataclasses.asdict(scale),
        "dataset": name,
        "scale_factors": scale_factors(scale, name),
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_before": load_before,
            "load_after": os.getloadavg(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t_start)),
            "wall_s": round(time.time() - t_start, 1),
        },
        "scenarios": [],
    }
    full = study.results["full50"].get("search", {}).get("avg_config_s")
    for key, label, orig_s, orig_acc in SCENARIOS:
        s = study.results[key].get("search", {})
        avg = s.get("avg_config_s")
        report["scenarios"].append(
            {
                "key": key,
                "label": label,
                "epochs": scale.epochs_of(key),
                "original": {"avg_config_s": orig_s, "retrained_acc": orig_acc},
                "time_saved_vs_full": (1 - avg / full) if avg is not None and full else None,
                "search": s,
                "retrain": study.results[key].get("retrain"),
            }
        )
    write_report(report, out)
    return report


# -- the report ------------------------------------------------------------------------------


def _pct(v: float | None, digits: int = 1) -> str:
    return "–" if v is None else f"{100 * v:.{digits}f}%"


def _sec(v: float | None) -> str:
    return "–" if v is None else f"{v:.1f}"


def markdown(report: dict[str, Any]) -> str:
    sc, m = report["scale"], report["machine"]
    lines = [
        f"# Subset-selection study, scale `{sc['name']}` ({report['dataset']})",
        "",
        f"Started {m['started']}, {m['wall_s']} s wall; {m['cpus']} CPUs, Python {m['python']}; "
        f"load average before {m['load_before'][0]:.2f}, after {m['load_after'][0]:.2f}.",
        "",
        "| scenario | epochs here | configurations | avg. config run time (s) "
        "| time saved vs full data "
        "| best search val_acc | retrained test acc (chosen by val_acc) | best retrained test acc "
        "| original: time / acc |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in report["scenarios"]:
        search, rt = s["search"], s["retrain"] or {}
        lines.append(
            f"| {s['label']} | {s['epochs']} | {search.get('configurations', '–')} "
            f"| {_sec(search.get('avg_config_s'))} | {_pct(s['time_saved_vs_full'])} "
            f"| {_pct(search.get('best_val_acc'), 2)} | {_pct(rt.get('test_acc'), 2)} "
            f"| {_pct(rt.get('max_test_acc'), 2)} "
            f"| {s['original']['avg_config_s']:g} s / {_pct(s['original']['retrained_acc'])} |"
        )
    lines += [
        "",
        "Avg. config run time: each trial's `run_s` (seconds it ran, all segments) averaged over "
        "the search's trials; ASHA stops most of them early, the original study ran every "
        "configuration to the end. Retrained: the top configurations of each search trained on "
        "the full training split (`hpd retrain`), test accuracy of the one with the best "
        "validation accuracy, and the best test accuracy among them.",
        "",
        "| scale factor | original study | this run | factor |",
        "|---|---|---|---|",
        *(f"| {a} | {b} | {c} | {d} |" for a, b, c, d in report["scale_factors"]),
        "",
        "## Retrained configurations",
        "",
        "| scenario | search trial | search val_acc | retrained val_acc | test_acc | run s "
        "| params |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in report["scenarios"]:
        for r in (s["retrain"] or {}).get("rows", []):
            params = ", ".join(
                f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                for k, v in sorted(r["params"].items())
            )
            lines.append(
                f"| {s['key']} | {r['parent_trial']} | {_pct(_num(r['search_value']), 2)} "
                f"| {_pct(_num(r['value']), 2)} "
                f"| {_pct(_num(r.get('metrics', {}).get('test_acc')), 2)} "
                f"| {_sec(r.get('run_s'))} | {params} |"
            )
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path: Path) -> bool:
    """``study.png``: time per configuration (ours and the original's, relative to full data)
    and retrained test accuracy per scenario. False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display needed, and none wanted
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    scen = report["scenarios"]
    labels = [s["label"].replace(", ", "\n") + f"\n({s['epochs']} epochs here)" for s in scen]
    ours = [s["search"].get("avg_config_s") or 0.0 for s in scen]
    full = ours[0] or 1.0
    orig = [s["original"]["avg_config_s"] / scen[0]["original"]["avg_config_s"] for s in scen]
    acc = [((s["retrain"] or {}).get("test_acc") or 0.0) * 100 for s in scen]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    xs = range(len(scen))
    ax1.bar([x - 0.2 for x in xs], [o / full for o in ours], 0.4, label="this run")
    ax1.bar([x + 0.2 for x in xs], orig, 0.4, label="original study", alpha=0.6)
    for x, sec in zip(xs, ours, strict=True):
        ax1.annotate(f"{sec:.0f} s", (x - 0.2, sec / full), ha="center", va="bottom", fontsize=8)
    ax1.set_xticks(list(xs), labels, fontsize=8)
    ax1.set_ylabel("avg. time per configuration / full data, 50 epochs")
    ax1.set_title("Time per configuration")
    ax1.legend(fontsize=8)
    ax2.bar(list(xs), acc, 0.6, color="tab:green")
    for x, a in zip(xs, acc, strict=True):
        ax2.annotate(f"{a:.1f}", (x, a), ha="center", va="bottom", fontsize=8)
    lo = min((a for a in acc if a > 0), default=0.0)
    ax2.set_ylim(max(0.0, lo - 10), 100)
    ax2.set_xticks(list(xs), labels, fontsize=8)
    ax2.set_ylabel("test accuracy after full-data retraining (%)")
    ax2.set_title(f"Retrained (top {report['scale']['retrain_top']}, chosen by val_acc)")
    fig.suptitle(f"Subset-selection study, scale {report['scale']['name']} ({report['dataset']})")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def write_report(report: dict[str, Any], out: Path) -> None:
    (out / "results.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (out / "results.md").write_text(markdown(report))
    report["png"] = plot(report, out / "study.png")
    if not report["png"]:
        print("matplotlib is not installed: study.png skipped (pip install matplotlib)")


# -- the command -----------------------------------------------------------------------------


def _args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m examples.subset_study.run", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--scale", choices=sorted(SCALES), default="cpu")
    p.add_argument("--out", type=Path, default=None, help="default: subset_study_<scale>/")
    p.add_argument("--dataset", choices=["fashion-mnist", "cifar10"], default=None)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None)
    for name in ("configs", "epochs", "retrain-top", "retrain-epochs", "width", "train-samples"):
        p.add_argument(f"--{name}", type=int, default=None, help="override the scale's value")
    p.add_argument("--state-dir", default=None, help="the daemon to use (default: $HPD_HOME)")
    p.add_argument("--no-start", action="store_true", help="fail if no daemon is running")
    p.add_argument("--cpu-slots", type=int, default=None, help="for a private daemon")
    p.add_argument(
        "--slots-per-gpu", type=int, default=None, help="for a private daemon (trials per GPU)"
    )
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    a = _args(argv)
    over = {
        "configs": a.configs, "epochs": a.epochs, "retrain_top": a.retrain_top,
        "retrain_epochs": a.retrain_epochs, "width": a.width, "train_samples": a.train_samples,
    }  # fmt: skip
    scale = dataclasses.replace(SCALES[a.scale], **{k: v for k, v in over.items() if v is not None})
    out = a.out or Path(f"subset_study_{scale.name}")
    out.mkdir(parents=True, exist_ok=True)
    dataset = a.dataset or "fashion-mnist"
    print(f"Subset-selection study at scale {scale.name!r} on {dataset}; results in {out}/")
    for what, orig, ours, factor in scale_factors(scale, dataset):
        print(f"  {what:<38} original {orig:>6}  this run {ours:>6}  ({factor})")
    clock = Clock()
    client = Client(a.state_dir)
    with contextlib.ExitStack() as stack:
        if _answers(client):
            clock.say(f"using the running daemon ({client.layout.state})")
        elif a.no_start:
            print("no hpd daemon is running: start one with `hpd start` (or drop --no-start)")
            return 1
        else:
            log = (out / "daemon.log").resolve()
            clock.say(f"no daemon running: starting a private one (log: {log})")
            client = stack.enter_context(private_daemon(a.cpu_slots, log, a.slots_per_gpu))
        report = run_study(client, scale, out, dataset=a.dataset, device=a.device, clock=clock)
    print()
    print((out / "results.md").read_text())
    failed = [s["key"] for s in report["scenarios"] if not s["retrain"]]
    if failed:
        print(f"no retraining for: {', '.join(failed)} (a search did not complete; see above)")
    return 1 if failed else 0


def _exit_on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM (a `timeout`) unwinds like an exception, so a private daemon stops, its dir goes.

    Once only: `timeout` signals the process and then its process group, and a second exit
    inside the cleanup would cut it short."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.exit(143)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    sys.exit(main())
