"""earmark duplicates: groups of library files that are the same recording."""

from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from .library_cmd import db_option, open_db

CSV_FIELDS = [
    "group",
    "keeper",
    "path",
    "duration_s",
    "format",
    "codec",
    "sample_rate",
    "channels",
    "size",
    "bitrate_kbps",
    "lossless",
    "evidence",
]


@click.command("duplicates", short_help="List groups of library files that are the same recording.")
@db_option
@click.option(
    "--min-similarity",
    type=click.FloatRange(0, 1),
    default=0.7,
    show_default=True,
    help="Share of aligned fingerprint frames that must agree (same recording: 0.85+, unrelated: < 0.6).",
)
@click.option(
    "--min-embedding-similarity",
    type=click.FloatRange(0, 1),
    default=0.99,
    show_default=True,
    help="Window cosine for files too short to fingerprint (matched by CLAP embeddings only).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON document: groups, files, evidence.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV, one row per file, grouped.")
def duplicates_cmd(
    db_path: Path | None, min_similarity: float, min_embedding_similarity: float, as_json: bool, as_csv: bool
) -> None:
    """List groups of library files that are the same recording (any format, rate, bitrate, small trims).

    Files are matched by their Chromaprint fingerprints (stored by `earmark
    tag`; needs fpcalc) and, when too short to fingerprint, by their CLAP
    embeddings. Each group names a keeper: lossless over lossy, then higher
    sample rate and bitrate, then longer. Nothing is deleted.
    """
    from ..library.duplicates import DuplicateOptions, find_duplicates

    if as_json and as_csv:
        raise click.UsageError("choose one of --json and --csv")
    db = open_db(db_path)
    t = time.perf_counter()
    report = find_duplicates(
        db,
        DuplicateOptions(min_similarity=min_similarity, min_embedding_similarity=min_embedding_similarity),
    )
    seconds = time.perf_counter() - t
    if as_json:
        click.echo(json.dumps(report.to_dict(), ensure_ascii=False, indent=1))
    elif as_csv:
        _write_csv(report)
    else:
        _print(report)
    _footer(report, seconds)


def _evidence_text(group: Any, file_id: int) -> str:
    parts = []
    for e in group.evidence:
        if file_id not in (e.a, e.b):
            continue
        other = e.b if e.a == file_id else e.a
        text = f"{e.kind} {e.similarity:.2f} with #{other}"
        if e.embedding_cosine is not None and e.kind != "embedding":
            text += f" (embedding {e.embedding_cosine:.2f})"
        parts.append(text)
    return "; ".join(parts)


def _write_csv(report: Any) -> None:
    w = csv.DictWriter(sys.stdout, CSV_FIELDS, lineterminator="\n")
    w.writeheader()
    for n, g in enumerate(report.groups, 1):
        for f in g.files:
            w.writerow(
                {
                    "group": n,
                    "keeper": int(f.keeper),
                    "path": f.path,
                    "duration_s": f.duration_s,
                    "format": f.format,
                    "codec": f.codec,
                    "sample_rate": f.sample_rate,
                    "channels": f.channels,
                    "size": f.size,
                    "bitrate_kbps": f.bitrate_kbps,
                    "lossless": int(f.lossless),
                    "evidence": _evidence_text(g, f.file_id),
                }
            )


def _print(report: Any) -> None:
    for n, g in enumerate(report.groups, 1):
        click.echo(f"group {n}: {len(g.files)} files, keep #{g.keeper.file_id}")
        for f in g.files:
            mark = "keep" if f.keeper else "    "
            dur = f"{f.duration_s:7.2f} s" if f.duration_s is not None else "      ? s"
            rate = f"{f.sample_rate or 0:>6} Hz" if f.sample_rate else "       ?"
            kbps = f"{f.bitrate_kbps:7.0f} kb/s" if f.bitrate_kbps else ""
            kind = "lossless" if f.lossless else "lossy"
            click.echo(
                f"  {mark} #{f.file_id:<6} {dur} {(f.format or '?'):<6} {kind:<8} {rate} {kbps} "
                f"{f.size:>10} B  {f.path}"
            )
            ev = _evidence_text(g, f.file_id)
            if ev:
                click.echo(f"         {ev}")


def _footer(report: Any, seconds: float) -> None:
    dup_files = sum(len(g.files) for g in report.groups)
    msg = (
        f"{len(report.groups)} groups ({dup_files} files) among {report.files} files in {seconds * 1000:.0f} ms;"
        f" {report.fingerprinted} fingerprinted, {report.candidates} candidate pairs checked"
    )
    click.echo(msg, err=True)
    if report.without_fingerprint:
        hint = (
            "fpcalc is not installed (Debian: apt install libchromaprint-tools)"
            if not report.fpcalc
            else "too short, unreadable, or tagged before fingerprints: re-run `earmark tag` to add them"
        )
        click.echo(
            f"{report.without_fingerprint} files have no fingerprint ({hint});"
            " of those, only sounds under 4 s are compared (by embedding)",
            err=True,
        )


COMMANDS = [duplicates_cmd]
