"""The ``hpd`` command line (click): parsing and printing only; the daemon does the work.

Every listing command prints a table for people and, with ``--json``, stable keys for programs
(documented in the README). Tables are rich's (``rich.table.Table``), drawn plain: no borders,
two spaces between columns, cells never wrapped or cut and printed literally, styled (a bold
header) only on a terminal, so that piped output suits ``grep`` and ``awk``. Errors go to
stderr with a non-zero exit.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from hpd.client import FINAL_EXPERIMENT_STATES, Client
from hpd.errors import DaemonNotRunning, HpdError, RemoteError, SpecError
from hpd.io.paths import layout

STATE_DIR = click.option(
    "--state-dir",
    envvar="HPD_HOME",
    type=click.Path(file_okay=False),
    default=None,
    help="State directory (default: $HPD_HOME, else ~/.local/state/hpd).",
)
JSON = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


def _client(state_dir: str | None) -> Client:
    return Client(state_dir)


def _fail(message: str, code: int = 1) -> None:
    click.echo(f"hpd: {message}", err=True)
    sys.exit(code)


def _run(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except SpecError as exc:
        for line in exc.errors:
            click.echo(line, err=True)
        sys.exit(2)
    except RemoteError as exc:
        if exc.code == "SpecError":
            for line in str(exc).splitlines():
                click.echo(line, err=True)
            sys.exit(2)
        _fail(str(exc))
    except DaemonNotRunning as exc:
        _fail(str(exc), 3)
    except HpdError as exc:
        _fail(str(exc))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if value is None:
        return "-"
    if isinstance(value, dict):
        return " ".join(f"{k}={_fmt(v)}" for k, v in value.items())
    return str(value)


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print ``rows`` (each cell through ``_fmt``) under the upper-cased ``headers`` with rich.

    Left-aligned columns two spaces apart, no borders, no trailing whitespace; a cell is never
    wrapped or cut however wide, and ``[`` or ``:`` in it print literally (no markup,
    highlighting or emoji). Rendered by rich, written by ``click.echo``.
    """
    from rich.cells import cell_len
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    head = [h.upper() for h in headers]
    # tabs as rich would draw them, but before it measures (it counts a tab as no width)
    cells = [[_fmt(c).expandtabs() for c in r] for r in rows]
    table = Table(box=None, padding=(0, 2, 0, 0), pad_edge=False, show_edge=False)
    for h in head:
        table.add_column(Text(h), no_wrap=True, overflow="ignore")
    for r in cells:
        table.add_row(*(Text(c) for c in r))
    widths = [max([cell_len(h)] + [cell_len(r[i]) for r in cells]) for i, h in enumerate(head)]
    # rich decides from sys.stdout whether it is a terminal (styles) or not (plain text)
    console = Console(file=sys.stdout, markup=False, highlight=False, emoji=False)
    # as wide as the widest row, so that rich never squeezes a column
    options = console.options.update(width=max(console.width, sum(widths) + 2 * len(widths)))
    lines = []
    for segments in console.render_lines(table, options, pad=False):
        line = Text()
        for seg in segments:
            line.append(seg.text, seg.style)
        line.rstrip()  # rich pads every cell to its column's width
        lines.append(line)
    with console.capture() as captured:
        console.print(Text("\n").join(lines), soft_wrap=True)
    click.echo(captured.get(), nl=False)  # the stream every other line goes to (and CliRunner's)


def _print(obj: Any, as_json: bool, human: Callable[[Any], None]) -> None:
    if as_json:
        click.echo(json.dumps(obj, indent=2))
    else:
        human(obj)


@click.group()
@click.version_option(package_name="hpd")
def main() -> None:
    """hpd: a hyperparameter-search daemon (asynchronous successive halving on your GPUs)."""


# -- daemon ------------------------------------------------------------------------------


@main.command()
@STATE_DIR
@click.option("--foreground", is_flag=True, help="Run in the foreground (for systemd).")
@click.option("--gpus", default="auto", show_default=True, help="auto, none, or indices like 0,2.")
@click.option("--slots-per-gpu", default=1, show_default=True, type=click.IntRange(1, 64))
@click.option(
    "--cpu-slots", default=0, type=click.IntRange(0, 1024), help="CPU slots (0 = one per core)."
)
@click.option(
    "--grace",
    default=10.0,
    show_default=True,
    type=click.FloatRange(0, 3600),
    help="Seconds a stopping trial gets to checkpoint.",
)
@click.option(
    "--ray",
    "ray_address",
    metavar="ADDRESS",
    help="Run the slots as actors on this Ray cluster (HOST:PORT, or auto). Needs hpd[ray].",
)
@click.option(
    "--checkpoint-root",
    type=click.Path(file_okay=False),
    help="Trials' logs and checkpoints here: a directory every Ray node mounts (with --ray).",
)
def start(
    state_dir: str | None,
    foreground: bool,
    gpus: str,
    slots_per_gpu: int,
    cpu_slots: int,
    grace: float,
    ray_address: str | None,
    checkpoint_root: str | None,
) -> None:
    """Start the daemon (detaches unless --foreground)."""
    lay = layout(state_dir)
    if checkpoint_root and not ray_address:
        _fail("--checkpoint-root: only with --ray (on one machine, trials use the state dir)")
    if _answers(state_dir):
        _fail(f"already running (state dir {lay.state})")
    if foreground:
        from hpd.daemon import AlreadyRunning, Config, serve_forever

        cfg = Config(
            lay,
            gpus=gpus,
            slots_per_gpu=slots_per_gpu,
            cpu_slots=cpu_slots,
            grace_s=grace,
            ray=ray_address,
            checkpoint_root=Path(checkpoint_root).resolve() if checkpoint_root else None,
        )
        try:
            serve_forever(cfg)
        except AlreadyRunning as exc:
            _fail(f"already running: {exc}")
        except HpdError as exc:
            _fail(str(exc))
        return
    pid = _spawn_daemon(
        state_dir,
        [
            "--gpus",
            gpus,
            "--slots-per-gpu",
            str(slots_per_gpu),
            "--cpu-slots",
            str(cpu_slots),
            "--grace",
            str(grace),
            *(["--ray", ray_address] if ray_address else []),
            *(["--checkpoint-root", checkpoint_root] if checkpoint_root else []),
        ],
    )
    click.echo(f"hpd started (pid {pid}, state dir {lay.state})")


def _spawn_daemon(state_dir: str | None, args: list[str], env: dict[str, str] | None = None) -> int:
    """Start a detached daemon; return its pid once its socket answers."""
    lay = layout(state_dir)
    lay.state.mkdir(parents=True, exist_ok=True, mode=0o700)
    argv = [
        sys.executable,
        "-m",
        "hpd",
        "start",
        "--foreground",
        "--state-dir",
        str(lay.state),
        *args,
    ]
    with open(lay.daemon_log, "ab") as log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if _answers(state_dir):
            return proc.pid
        if proc.poll() is not None:
            tail = lay.daemon_log.read_text(errors="replace").splitlines()[-5:]
            _fail("the daemon exited at start:\n" + "\n".join(tail))
        time.sleep(0.05)
    _fail(f"the daemon did not answer within 30 s; see {lay.daemon_log}")
    return -1


def _answers(state_dir: str | None) -> bool:
    try:
        with Client(state_dir, timeout=2) as c:
            c.ping()
        return True
    except (HpdError, OSError):
        return False


@main.command()
@STATE_DIR
@click.option("--wait/--no-wait", default=True, help="Wait until the daemon has exited.")
def stop(state_dir: str | None, wait: bool) -> None:
    """Stop the daemon gracefully: trials checkpoint and resume at the next start."""
    info = _run(lambda: _client(state_dir).call("ping"))
    _run(lambda: _client(state_dir).call("stop"))
    if wait:
        while _pid_alive(int(info["pid"])):
            time.sleep(0.05)
    click.echo("hpd stopped")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -- experiments ---------------------------------------------------------------------------


@main.command()
@STATE_DIR
@JSON
@click.argument("spec", type=click.Path(exists=True, dir_okay=False))
def submit(state_dir: str | None, as_json: bool, spec: str) -> None:
    """Submit a search spec (TOML, YAML or JSON); prints the experiment id."""
    exp = _run(lambda: _client(state_dir).submit(spec))
    click.echo(json.dumps({"id": exp.id}) if as_json else str(exp.id))


def _key_values(d: dict[str, Any]) -> None:
    for k, v in d.items():
        click.echo(f"{k}: {_fmt(v)}")


def _daemon_rows(info: dict[str, Any]) -> None:
    nodes = info.get("nodes") or []
    _key_values({k: v for k, v in info.items() if k != "nodes"})
    if nodes:  # --ray: the slots by node
        click.echo()
        _table(
            ["node", "gpu slots", "cpu slots", "busy"],
            [[n["node"], n["gpu_slots"], n["cpu_slots"], n["busy"]] for n in nodes],
        )


def _status_rows(items: list[dict[str, Any]]) -> None:
    rows = []
    for s in items:
        b = s.get("best") or {}
        counts = " ".join(f"{k}:{v}" for k, v in sorted(s["trials"].items()))
        rows.append(
            [
                s["id"],
                s["name"],
                s["state"],
                counts,
                b.get("value"),
                b.get("trial"),
                f"{s['elapsed_s']:.0f}s",
            ]
        )
    _table(["id", "name", "state", "trials", "best", "best trial", "elapsed"], rows)


@main.command("ls")
@STATE_DIR
@JSON
def ls_(state_dir: str | None, as_json: bool) -> None:
    """List experiments."""
    _print(_run(lambda: _client(state_dir).call("ls")), as_json, _status_rows)


@main.command()
@STATE_DIR
@JSON
@click.argument("exp", type=int, required=False)
def status(state_dir: str | None, as_json: bool, exp: int | None) -> None:
    """One experiment's state, trial counts and best result (the daemon's, without EXP)."""
    if exp is None:
        info = _run(lambda: _client(state_dir).call("daemon"))
        _print(info, as_json, _daemon_rows)
        return
    _print(
        _run(lambda: _client(state_dir).call("status", exp=exp)),
        as_json,
        lambda s: _status_rows([s]),
    )


@main.command()
@STATE_DIR
@JSON
@click.argument("exp", type=int)
def trials(state_dir: str | None, as_json: bool, exp: int) -> None:
    """Every trial of an experiment: state, rung, results, GPU, attempts."""

    def human(items: list[dict[str, Any]]) -> None:
        rows = [
            [
                t["id"],
                t["state"],
                t["rung"],
                t["epoch"],
                t["results"].get(str(t["rung"])),
                t["gpu"],
                t["attempts"],
                t["params"],
            ]
            for t in items
        ]
        _table(["id", "state", "rung", "epoch", "value", "gpu", "attempts", "params"], rows)

    _print(_run(lambda: _client(state_dir).call("trials", exp=exp)), as_json, human)


@main.command()
@STATE_DIR
@JSON
@click.argument("exp", type=int)
def best(state_dir: str | None, as_json: bool, exp: int) -> None:
    """The best configuration so far."""

    def human(b: dict[str, Any] | None) -> None:
        if not b:
            click.echo("no result yet")
            return
        click.echo(f"trial {b['trial']}: {b['value']:.6g} at rung {b['rung']}")
        for k, v in b["params"].items():
            click.echo(f"  {k} = {_fmt(v)}")

    _print(_run(lambda: _client(state_dir).call("best", exp=exp)), as_json, human)


@main.command()
@STATE_DIR
@JSON
@click.argument("exp", type=int)
def events(state_dir: str | None, as_json: bool, exp: int) -> None:
    """The decision log: why each trial was created, promoted, stopped or failed."""

    def human(items: list[dict[str, Any]]) -> None:
        skip = {"seq", "time", "type", "trial"}
        rows = [
            [
                e["seq"],
                time.strftime("%H:%M:%S", time.localtime(e["time"])),
                e["type"],
                e["trial"],
                _event_details(e, skip),
            ]
            for e in items
        ]
        _table(["seq", "time", "type", "trial", "details"], rows)

    _print(_run(lambda: _client(state_dir).call("events", exp=exp)), as_json, human)


def _event_details(e: dict[str, Any], skip: set[str]) -> dict[str, Any]:
    """An event's fields for people: a proposal as its one-line summary."""
    out = {k: v for k, v in e.items() if k not in skip}
    proposal = out.get("proposal")
    if isinstance(proposal, dict) and "summary" in proposal:
        out["proposal"] = proposal["summary"]
    return out


def _retrain_rows(r: dict[str, Any]) -> None:
    click.echo(
        f"experiment {r['id']} ({r['state']}): top {len(r['rows'])} of experiment {r['parent']},"
        f" {r['epochs']} epochs on full data, ranked by {r['metric']} ({r['mode']})"
    )
    rows = [
        [
            x["rank"],
            x["parent_trial"],
            x["search_value"],
            x["search_rung"],
            x["trial"],
            x["state"],
            x["value"],
            {k: v for k, v in x["metrics"].items() if k not in ("epoch", r["metric"])},
            f"{x['run_s']:.1f}s",
        ]
        for x in r["rows"]
    ]
    headers = ["rank", "search trial", "search", "at", "trial", "state", "retrained"]
    _table([*headers, "other metrics", "run"], rows)


@main.command()
@STATE_DIR
@JSON
@click.argument("exp", type=int)
@click.option("--top", default=3, show_default=True, type=int, help="How many configurations.")
@click.option("--epochs", required=True, type=int, help="Epochs of full-data training each.")
@click.option("--metric", default=None, help="Metric to rank the retrained trials by.")
@click.option("--mode", default=None, type=click.Choice(["max", "min"]))
@click.option("--wait", "wait_", is_flag=True, help="Wait for it to finish and print the table.")
def retrain(
    state_dir: str | None,
    as_json: bool,
    exp: int,
    top: int,
    epochs: int,
    metric: str | None,
    mode: str | None,
    wait_: bool,
) -> None:
    """Train the top configurations of a finished search on the full data.

    A new experiment, linked to EXP, runs each configuration for --epochs epochs with no
    early stopping and no subset. Prints its id (with --wait, the table of search results
    beside retrained results once it ends).
    """

    def go() -> dict[str, Any]:
        with _client(state_dir) as c:
            child = c.experiment(exp).retrain(top, epochs, metric=metric, mode=mode)
            if not wait_:
                return {"id": child.id}
            child.wait()
            return child.retrained()

    r = _run(go)
    if not wait_:
        click.echo(json.dumps(r) if as_json else str(r["id"]))
        return
    _print(r, as_json, _retrain_rows)


@main.command()
@STATE_DIR
@JSON
@click.argument("exp", type=int)
def retrained(state_dir: str | None, as_json: bool, exp: int) -> None:
    """A retraining's configurations beside the search results that chose them."""
    _print(_run(lambda: _client(state_dir).call("retrained", exp=exp)), as_json, _retrain_rows)


def _state_command(op: str, doc: str) -> None:
    @main.command(name=op, help=doc)
    @STATE_DIR
    @JSON
    @click.argument("exp", type=int)
    def cmd(state_dir: str | None, as_json: bool, exp: int) -> None:
        r = _run(lambda: _client(state_dir).call(op, exp=exp))
        click.echo(json.dumps(r) if as_json else f"experiment {r['id']}: {r['state']}")


_state_command("pause", "Pause: running trials checkpoint and free their GPUs.")
_state_command("resume", "Resume a paused experiment from its checkpoints.")
_state_command("cancel", "Cancel an experiment (running trials are stopped).")


@main.command()
@STATE_DIR
@click.argument("trial", type=int)
@click.option("-f", "--follow", is_flag=True, help="Keep printing as the trial writes.")
def logs(state_dir: str | None, trial: int, follow: bool) -> None:
    """A trial's stdout and stderr, all segments."""
    c = _client(state_dir)
    offset = 0
    while True:
        r = _run(functools.partial(c.call, "logs", trial=trial, offset=offset))
        if r["text"]:
            click.echo(r["text"], nl=False)
        offset = r["offset"]
        if not follow or (r["final"] and not r["text"]):
            return
        if not r["text"]:
            time.sleep(0.5)


@main.command()
@STATE_DIR
@click.argument("exp", type=int)
@click.option(
    "--format", "fmt", type=click.Choice(["csv", "json"]), default="json", show_default=True
)
def export(state_dir: str | None, exp: int, fmt: str) -> None:
    """All results, per-epoch metrics included."""
    r = _run(lambda: _client(state_dir).call("export", exp=exp, format=fmt))
    click.echo(r["csv"] if fmt == "csv" else json.dumps(r, indent=2), nl=fmt != "csv")


@main.command()
@STATE_DIR
def tui(state_dir: str | None) -> None:
    """The terminal UI."""
    try:
        from tui.app import run  # type: ignore[import-not-found,unused-ignore]
    except ImportError as exc:
        _fail(f"the terminal UI is not available: {exc}")
    run(state_dir)


@main.command()
@STATE_DIR
@click.option("--keep", is_flag=True, help="Leave the daemon running afterwards.")
def demo(state_dir: str | None, keep: bool) -> None:
    """Run the embedded demo search (an MLP on Fashion-MNIST) and show it live."""
    from hpd import demo as demo_mod
    from hpd.io import gpus as gpus_mod

    started = False
    if not _answers(state_dir):
        env = {}
        if not os.environ.get("HPD_FAKE_GPUS") and gpus_mod.probe_from_env("auto") is None:
            click.echo("no NVIDIA GPU found: the daemon gets 4 fake GPUs (HPD_FAKE_GPUS=4)")
            env["HPD_FAKE_GPUS"] = "4"
        _spawn_daemon(state_dir, [], env)
        started = True
    client = _client(state_dir)
    spec, sampler = demo_mod.spec_to_submit()
    exp = _run(lambda: client.submit(spec))
    click.echo(
        f"experiment {exp.id}: {demo_mod.dataset()[4]}, ASHA over 27 configurations,"
        f" proposed by {sampler}"
    )
    t0, last, tty = time.monotonic(), "", sys.stdout.isatty()
    while True:
        st = exp.status()
        best = (st.get("best") or {}).get("value")
        counts = " ".join(f"{k}:{v}" for k, v in sorted(st["trials"].items()))
        line = (
            f"  {time.monotonic() - t0:5.1f}s  {st['state']:<9} {counts}  best val_acc {_fmt(best)}"
        )
        done = st["state"] in FINAL_EXPERIMENT_STATES
        if tty:
            click.echo("\r" + line.ljust(100), nl=done)
        elif line[8:] != last or done:
            click.echo(line)
        last = line[8:]
        if done:
            break
        time.sleep(0.5)
    rows = [
        [r["rung"], r["resource"], r["results"], r["promoted"], r["best"]] for r in exp.ladder()
    ]
    _table(["rung", "epochs", "results", "promoted", "best"], rows)
    b = exp.best()
    if b:
        click.echo(f"best: trial {b['trial']} val_acc {b['value']:.4f} with {_fmt(b['params'])}")
    click.echo(f"see it all: hpd events {exp.id}; hpd trials {exp.id}; hpd tui")
    if started and not keep:
        _run(lambda: client.call("stop"))
