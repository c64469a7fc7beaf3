"""earmark review: one keystroke per file (accept, relabel, skip), audio played where possible."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import click

from .library_cmd import db_option, open_db

PLAYERS = (["ffplay", "-nodisp", "-autoexit", "-loglevel", "quiet"], ["paplay"], ["aplay", "-q"], ["afplay"])
KEYS = "a accept · 1-9 relabel · r type a label · s skip · p play again · q quit"


def find_player() -> list[str] | None:
    """The first audio player command found on PATH (ffplay, paplay, aplay, afplay), or None."""
    for cmd in PLAYERS:
        if shutil.which(cmd[0]):
            return cmd
    return None


class _Player:
    def __init__(self, cmd: list[str] | None) -> None:
        self.cmd = cmd
        self.proc: subprocess.Popen[bytes] | None = None

    def play(self, path: str) -> None:
        self.stop()
        if self.cmd and Path(path).is_file():
            self.proc = subprocess.Popen(
                [*self.cmd, path],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait()
        self.proc = None


def _show(i: int, n: int, item: Any) -> None:
    dur = f" ({item.duration_s:.1f} s)" if item.duration_s else ""
    click.echo(f"\n[{i}/{n}] {item.path}{dur}")
    click.echo("   " + "   ".join(f"{lab} {p:.2f}" for lab, p in item.top))
    click.echo("   " + "  ".join(f"[{j}] {lab}" for j, lab in enumerate(item.labels[:9], 1)))
    click.echo(f"   {KEYS}")


def _read_key() -> str:
    """One key: from the terminal, or (stdin piped, no terminal) the next non-newline character; EOF quits."""
    if sys.stdin.isatty():
        try:
            return click.getchar()
        except OSError:  # no controlling terminal after all
            pass
    while True:
        ch = sys.stdin.read(1)
        if ch == "":
            return "q"
        if ch not in "\r\n":
            return ch


def _ask(item: Any, player: _Player) -> tuple[str, str | None] | None:
    """Read keys until one decides; returns (decision, label), or None to quit."""
    while True:
        key = _read_key()
        if key in ("q", "\x03", "\x04"):
            return None
        if key == "a" and item.top:
            return "accept", None
        if key == "s" or key == " ":
            return "skip", None
        if key.isdigit() and 1 <= int(key) <= min(9, len(item.labels)):
            return "relabel", item.labels[int(key) - 1]
        if key == "r":
            label = click.prompt("   label", default="", show_default=False).strip()
            if label:
                return "relabel", label
        elif key == "p":
            player.play(item.path)
        else:
            click.echo(f"   ? {KEYS}")


@click.command(
    "review", short_help="Go through files below the confidence bar: accept, relabel or skip each."
)
@db_option
@click.option("--limit", type=click.IntRange(1), default=None, help="Review at most this many files.")
@click.option(
    "--play/--no-play",
    default=None,
    help="Play each file (default: when a player exists and this is a terminal).",
)
@click.option(
    "--apply-only", is_flag=True, help="Only file decided files (e.g. from the web page); ask nothing."
)
def review_cmd(db_path: Path | None, limit: int | None, play: bool | None, apply_only: bool) -> None:
    """Go through files below the confidence bar: accept, relabel or skip each with one key.

    Decisions are stored; decided files are then filed where their tagging
    run's --sort-into wants them (from _review/ into <label>/, undoable).
    """
    from ..library.review import apply_decisions, decide, review_queue

    db = open_db(db_path)
    counts = {"accept": 0, "relabel": 0, "skip": 0}
    if not apply_only:
        queue = review_queue(db, limit=limit)
        if not queue:
            click.echo("nothing to review", err=True)
        want_play = play if play is not None else sys.stdin.isatty()
        player = _Player(find_player() if want_play else None)
        try:
            for i, item in enumerate(queue, 1):
                _show(i, len(queue), item)
                player.play(item.path)
                answer = _ask(item, player)
                if answer is None:
                    break
                final = decide(db, item.file_id, answer[0], label=answer[1], via="cli")
                counts[answer[0]] += 1
                click.echo(f"   -> {answer[0]}" + (f" as {final!r}" if final else ""))
        finally:
            player.stop()
    moved = failed = 0
    for result in apply_decisions(db):
        moved += result.state == "done"
        if result.state == "failed":
            failed += 1
            click.echo(f"could not file {result.op.src}: {result.error}", err=True)
    click.echo(
        f"{counts['accept']} accepted, {counts['relabel']} relabelled, {counts['skip']} skipped; "
        f"{moved} files re-filed" + (f", {failed} failed" if failed else ""),
        err=True,
    )
