"""Drawing library runs for people: the progress bar, the summary, the run list."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

import click


def draw_tag_run(events: Iterable[Any]) -> bool:
    """Consume a tagging run's events with a progress bar on stderr; returns True if filing failed."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from ..library.progress import FileFiled, FileTagged, RunFinished, RunStarted

    console = Console(stderr=True)
    progress = Progress(
        TextColumn("tagging"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:.1f} files/s"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )
    task = None
    t0 = time.perf_counter()
    failed = False
    with progress:
        for ev in events:
            if isinstance(ev, RunStarted):
                click.echo(f"run {ev.run_id}: {ev.total} audio files", err=True)
                task = progress.add_task("tag", total=ev.total, rate=0.0)
            elif isinstance(ev, FileTagged):
                if ev.status == "error" and ev.how != "skipped":  # old errors are in the summary count
                    progress.console.print(
                        f"[red]error[/red] {ev.path}: {ev.error}", highlight=False, soft_wrap=True
                    )
                if task is not None:
                    done = progress.tasks[task].completed + 1
                    progress.update(task, completed=done, rate=done / max(time.perf_counter() - t0, 1e-6))
            elif isinstance(ev, FileFiled):
                failed |= _draw_filed(progress.console, ev.result)
            elif isinstance(ev, RunFinished):
                summary = _summary(ev.run_id, ev.counts, time.perf_counter() - t0)
    click.echo(summary, err=True)
    return failed


def _draw_filed(console: Any, result: Any) -> bool:
    op = result.op
    if result.state == "planned":
        click.echo(f"{op.action} {op.src} -> {op.dst}")
    elif result.state == "skipped":
        click.echo(f"skip {op.src}: {result.error}")
    elif result.state == "failed":
        console.print(
            f"[red]could not {op.action}[/red] {op.src}: {result.error}", highlight=False, soft_wrap=True
        )
        return True
    return False


def _summary(run_id: int, c: dict[str, int], seconds: float) -> str:
    tagged = c.get("auto", 0) + c.get("review", 0) + c.get("error", 0)
    parts = [
        f"{c.get('auto', 0)} confident",
        f"{c.get('review', 0)} to review",
        f"{c.get('error', 0)} errors",
    ]
    how = [f"{c[k]} {k}" for k in ("embedded", "rescored", "skipped") if c.get(k)]
    text = f"run {run_id}: {tagged} files in {seconds:.1f} s ({tagged / max(seconds, 1e-6):.1f} files/s): "
    text += ", ".join(parts) + (f" ({', '.join(how)})" if how else "")
    if "filed" in c or "filing_failed" in c:
        text += (
            f"; filed {c.get('filed', 0)}, failed {c.get('filing_failed', 0)}; undo: earmark undo {run_id}"
        )
    if "duplicates_skipped" in c:
        text += f"; {c['duplicates_skipped']} duplicates not filed (another copy of the recording was)"
    if "planned" in c:
        text += f"; dry run: {c['planned']} operations planned, nothing changed"
    return text


def run_rows(db: Any, limit: int = 20) -> list[dict[str, Any]]:
    """Recent runs, newest first, as plain dicts (what ``undo --list --json`` prints)."""
    rows = db.conn.execute(
        "SELECT r.*, (SELECT count(*) FROM lib_ops o WHERE o.run_id=r.id AND o.state='done') AS done_ops"
        " FROM lib_runs r ORDER BY id DESC LIMIT ?",
        (limit,),
    ).fetchall()
    out = []
    for r in rows:
        out.append(
            {
                "run": r["id"],
                "kind": r["kind"],
                "state": r["state"],
                "started_at": r["started_at"],
                "files_moved": r["done_ops"],
                "sort_into": r["sort_into"],
                "mode": r["mode"],
                "undo_of": r["undo_of"],
                "counts": json.loads(r["summary"]) if r["summary"] else {},
            }
        )
    return out


def print_runs(db: Any, limit: int = 20, *, as_json: bool = False) -> None:
    """The run list: a table for people, or JSON Lines with ``as_json``."""
    runs = run_rows(db, limit)
    if as_json:
        for run in runs:
            click.echo(json.dumps(run, ensure_ascii=False, sort_keys=True))
        return
    if not runs:
        click.echo("no runs yet", err=True)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(show_edge=False)
    for col in ("run", "kind", "state", "started", "filed", "into", "files"):
        table.add_column(
            col,
            justify="right" if col in ("run", "filed") else "left",
            no_wrap=col in ("run", "kind", "state", "started", "filed"),
            overflow="fold",  # a folder is shown whole, over several lines if need be, never cut with "…"
        )
    for run in runs:
        where = (
            f"{run['sort_into']} ({run['mode']})"
            if run["sort_into"]
            else f"undo of run {run['undo_of']}"
            if run["undo_of"]
            else ""
        )
        counts = ", ".join(f"{n} {k}" for k, n in run["counts"].items()) or ""
        table.add_row(
            str(run["run"]),
            run["kind"],
            run["state"],
            run["started_at"][:19].replace("T", " "),
            str(run["files_moved"]),
            where,
            counts,
        )
    Console().print(table)
