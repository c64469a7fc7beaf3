"""``earmark tag``: classify a library of files into SQLite, cheaply re-runnable.

A run walks the folders, fingerprints each file (size, mtime, sha256; the hash
is reused while size and mtime are unchanged), and then per file:

- *skipped*: its bytes already have a prediction for this model, label set and
  settings (or a recorded decode error): nothing is decoded or scored;
- *rescored*: its window embeddings are stored, only the labels changed: scored
  with :meth:`Classifier.score`, no audio is decoded;
- *embedded*: decoded and embedded with :func:`earmark.stage.embed_many`
  (decoding overlaps the model there), then scored from the full-precision
  vectors (the store keeps float16, see :mod:`.records`).

Each file's results are written in one transaction, so a run killed at any
point loses at most the file in flight; the next run picks up from there. The
model is loaded only when something needs it, so a re-run with nothing new is
instant. Filing (``sort_into``) runs after tagging, see :mod:`.filing`.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ..audio import AudioWarning, describe
from ..classify import AudioEmbedding, Classifier
from ..errors import AudioError
from ..labels import check_pack_labels, parse_labels
from ..store import Database
from ..types import ClassifyOptions
from . import fingerprints, records
from .filing import FilingOptions, OpResult, check_writable, execute, plan_filing
from .journal import finish_run, start_run, writer
from .progress import FileFiled, FileTagged, RunFinished, RunStarted, TagEvent
from .scan import content_hash, ordered_map, stat_file, walk_audio

if TYPE_CHECKING:
    from ..adapt.packs import ClassifierPack
    from ..types import Prediction

__all__ = ["ModelRef", "TagOptions", "tag_paths"]

log = logging.getLogger("earmark")


@dataclass(frozen=True, kw_only=True)
class TagOptions:
    """What a tagging run asks.

    Attributes:
        labels: candidate labels (at least 2); with ``pack``, empty or the pack's labels.
        min_confidence: top probability at or above which a file is ``auto``;
            below it the file goes to ``review``.
        classify: windows, hop, templates, aggregation (its threshold is
            replaced by ``min_confidence``).
        denoise: spectral-gating noise reduction before embedding (``noisereduce``).
        retry_errors: decode again files whose same bytes failed before.
        hash_workers: threads fingerprinting files ahead of the model.
        pack: a few-shot classifier pack (``earmark fit``) scoring its own labels
            instead of label texts; its calibrated thresholds apply under
            ``classify.label_thresholds``.
    """

    labels: tuple[str, ...] = ()
    min_confidence: float = 0.8
    classify: ClassifyOptions = field(default_factory=ClassifyOptions)
    denoise: bool = False
    retry_errors: bool = False
    hash_workers: int = 2
    pack: ClassifierPack | None = None

    def resolved(self) -> TagOptions:
        """Labels parsed (the pack's when there is one), the pack's thresholds merged in.

        Raises:
            LabelError: unusable labels, or labels other than the pack's.
            ConfigError: a hop under ``MIN_HOP_S`` or over the window (millions of windows per file).
        """
        from ..errors import ConfigError
        from ..types import MIN_HOP_S

        hop, window = self.classify.hop_s, self.classify.window_s
        if not (0 < window and MIN_HOP_S <= hop <= window):
            raise ConfigError(f"hop_s must be between {MIN_HOP_S:g} s and window_s ({window:g} s)")
        if self.pack is None:
            return replace(self, labels=parse_labels(self.labels))
        check_pack_labels(self.labels, self.pack.labels, verb="tags with")
        return replace(self, labels=self.pack.labels, classify=self.pack.options(self.classify))


class ModelRef:
    """A model named now and loaded only when audio or new labels need it.

    Args:
        name: alias, hub id or folder (as :class:`Classifier` takes it).
        loader: builds the classifier (default ``Classifier(name, throughput=True)``).
    """

    def __init__(self, name: str, loader: Callable[[], Classifier] | None = None) -> None:
        from ..models import canonical

        self.name = canonical(name)
        self._loader = loader or (lambda: Classifier(name, throughput=True))
        self._classifier: Classifier | None = None
        self._checks: list[Callable[[Classifier], None]] = []
        self._key: str | None = None

    @classmethod
    def of(cls, classifier: Classifier) -> ModelRef:
        ref = cls(classifier.model_id, lambda: classifier)
        ref._classifier = classifier
        return ref

    @property
    def key(self) -> str:
        """Name and fingerprint (:func:`.records.model_key`), read from the model folder without loading it."""
        if self._key is None:
            if self._classifier is not None:
                self._key = records.classifier_key(self._classifier)
            else:
                from ..backends.identity import model_fingerprint
                from ..models import resolve

                self._key = records.model_key(self.name, model_fingerprint(resolve(self.name)))
        return self._key

    @property
    def loaded(self) -> bool:
        return self._classifier is not None

    def check_on_load(self, check: Callable[[Classifier], None]) -> None:
        """Run ``check`` on the classifier as soon as it is loaded (now, if it is)."""
        self._checks.append(check)
        if self._classifier is not None:
            check(self._classifier)

    def get(self) -> Classifier:
        if self._classifier is None:
            log.info("loading model %s", self.name)
            classifier = self._loader()
            for check in self._checks:
                check(classifier)
            self._classifier = classifier
        return self._classifier


@dataclass(frozen=True, kw_only=True)
class _Print:
    """A fingerprinted file: stat, hash, header facts when new, or why it could not be read."""

    path: str
    size: int = 0
    mtime_ns: int = 0
    digest: str = ""
    info: dict[str, Any] | None = None
    error: str | None = None
    chroma: fingerprints.Fingerprint | None = None  # computed when these bytes have none stored


# a replacement for the local decode+embed step (the Ray pipeline): (ctx, paths) -> (path, result) pairs
Embedder = Callable[[Any, list[str]], Iterator[tuple[str, Any]]]


@dataclass
class _Ctx:
    db: Database
    run_id: int
    options: TagOptions
    model: ModelRef
    key: records.EmbeddingKey
    labels_key: str
    copts: ClassifyOptions
    counts: dict[str, int] = field(default_factory=dict)
    embedder: Embedder | None = None

    def count(self, name: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1


def tag_paths(
    db: Database,
    roots: Iterable[str | os.PathLike[str]],
    options: TagOptions,
    model: Classifier | ModelRef,
    filing: FilingOptions | None = None,
    *,
    embedder: Embedder | None = None,
) -> Iterator[TagEvent]:
    """Tag every audio file under ``roots`` into ``db``, then file them if asked.

    Args:
        db: the library database (migrated here).
        roots: folders (walked recursively, symlinks not followed) and files; ``~`` is expanded.
        options: labels, minimum confidence, windows, pre-processing.
        model: a loaded :class:`Classifier`, or a :class:`ModelRef` loaded only if needed.
        filing: sort into ``OUT/<label>/`` (copy or move, or a dry run).
        embedder: decode and embed somewhere else (see :mod:`earmark.distributed`).

    Yields:
        :class:`RunStarted`, one :class:`FileTagged` per file, one
        :class:`FileFiled` per filing operation, then :class:`RunFinished`.

    Raises:
        LabelError: unusable labels. StoreError: another process is writing.
        FilingError: the output folder cannot be written (tagging results are kept).
    """
    options = options.resolved()
    ref = model if isinstance(model, ModelRef) else ModelRef.of(model)
    if options.pack is not None:
        ref.check_on_load(
            options.pack.check
        )  # a pack fitted on another model fails before any file is scored
    with writer(db):
        ctx = _context(db, ref, options, filing)
        ctx.embedder = embedder
        state = "failed"
        try:
            expanded = [os.path.expanduser(os.fspath(root)) for root in roots]
            paths = list(walk_audio(expanded, exclude=[filing.sort_into] if filing else []))
            yield RunStarted(run_id=ctx.run_id, total=len(paths))
            file_ids = []
            for event in _tag_all(ctx, paths):
                file_ids.append(event.file_id)
                yield event
            if filing:
                yield from _file_all(ctx, file_ids, filing)
            state = "done"
        except (GeneratorExit, KeyboardInterrupt):
            state = "interrupted"
            raise
        finally:
            finish_run(db, ctx.run_id, state, ctx.counts)
        yield RunFinished(run_id=ctx.run_id, counts=dict(ctx.counts))


def _context(db: Database, ref: ModelRef, options: TagOptions, filing: FilingOptions | None) -> _Ctx:
    copts = replace(options.classify, threshold=options.min_confidence)
    key = records.EmbeddingKey(
        model=ref.key,
        window_s=copts.window_s,
        hop_s=copts.hop_s,
        preprocess="noisereduce" if options.denoise else "none",
    )
    pack = options.pack
    lkey = records.labels_key(key, options.labels, copts, pack=pack.digest if pack else None)
    run_opts = {
        "min_confidence": options.min_confidence,
        "window_s": copts.window_s,
        "hop_s": copts.hop_s,
        "templates": list(copts.templates),
        "aggregate": copts.aggregate,
        "preprocess": key.preprocess,
        "model_key": key.model,
        **({"pack": {"model": pack.model, "digest": pack.digest}} if pack else {}),
    }
    run_id = start_run(
        db,
        "tag",
        model=records.model_name(ref.name),
        labels=json.dumps(list(options.labels)),
        labels_key=lkey,
        options=json.dumps(run_opts),
        sort_into=str(filing.sort_into) if filing else None,
        mode=None if not filing else "dry-run" if filing.dry_run else "move" if filing.move else "copy",
    )
    return _Ctx(db=db, run_id=run_id, options=options, model=ref, key=key, labels_key=lkey, copts=copts)


def _fingerprint(db: Database, path: str) -> _Print:
    """stat + hash (reused while size and mtime match) + header facts for new content; runs in a thread."""
    try:
        st = stat_file(path)
        row = db.conn.execute(
            "SELECT size, mtime_ns, content_hash FROM lib_files WHERE path=?", (path,)
        ).fetchone()
        if row and (row["size"], row["mtime_ns"]) == (st.size, st.mtime_ns) and row["content_hash"]:
            return _Print(path=path, size=st.size, mtime_ns=st.mtime_ns, digest=row["content_hash"])
        digest = content_hash(path)
    except OSError as ex:
        return _Print(path=path, error=f"cannot read it ({ex.strerror or ex})")
    try:
        h = describe(path)
        info: dict[str, Any] = {
            "format": h.format,
            "codec": h.codec,
            "sample_rate": h.sample_rate,
            "channels": h.channels,
        }
    except AudioError:
        info = {}  # decoding will say what is wrong
    return _Print(path=path, size=st.size, mtime_ns=st.mtime_ns, digest=digest, info=info)


def _printed(db: Database, path: str) -> _Print:
    """:func:`_fingerprint` plus the Chromaprint fingerprint of contents that have none yet (same thread)."""
    fp = _fingerprint(db, path)
    if fp.error or not fingerprints.missing(db.conn, fp.digest):
        return fp
    return replace(fp, chroma=fingerprints.compute(path))


def _upsert_file(c: sqlite3.Connection, fp: _Print) -> int:
    """Insert or refresh a file row; new bytes at a known path forget the old results."""
    old = c.execute("SELECT id, content_hash FROM lib_files WHERE path=?", (fp.path,)).fetchone()
    if old is None:
        cur = c.execute(
            "INSERT INTO lib_files (path, size, mtime_ns, content_hash) VALUES (?,?,?,?)",
            (fp.path, fp.size, fp.mtime_ns, fp.digest),
        )
        file_id = int(cur.lastrowid or 0)
    else:
        file_id = int(old["id"])
        c.execute("UPDATE lib_files SET size=?, mtime_ns=? WHERE id=?", (fp.size, fp.mtime_ns, file_id))
        if old["content_hash"] != fp.digest:
            c.execute(
                "UPDATE lib_files SET content_hash=?, embedding_id=NULL, prediction_id=NULL, status=NULL,"
                " error=NULL, note=NULL, top_label=NULL, top_score=NULL, review_label=NULL,"
                " reviewed_at=NULL WHERE id=?",
                (fp.digest, file_id),
            )
    if fp.info is not None:
        c.execute(
            "UPDATE lib_files SET format=?, codec=?, sample_rate=?, channels=? WHERE id=?",
            (
                fp.info.get("format"),
                fp.info.get("codec"),
                fp.info.get("sample_rate"),
                fp.info.get("channels"),
                file_id,
            ),
        )
    return file_id


def _set_result(c: sqlite3.Connection, ctx: _Ctx, file_id: int, **fields: Any) -> None:
    fields = {"run_id": ctx.run_id, **fields}
    sets = ", ".join(f"{k}=?" for k in fields)
    c.execute(
        f"UPDATE lib_files SET {sets}, updated_at=strftime('%Y-%m-%dT%H:%M:%fZ','now') WHERE id=?",
        (*fields.values(), file_id),
    )


def _status(ctx: _Ctx, top_label: str, top_score: float) -> str:
    # a calibrated per-label threshold (earmark calibrate) replaces --min-confidence for its label
    bar = dict(ctx.copts.label_thresholds).get(top_label, ctx.options.min_confidence)
    return "auto" if top_score >= bar else "review"


def _tagged(ctx: _Ctx, path: str, file_id: int, how: str, status: str, **kw: Any) -> FileTagged:
    ctx.count(how)
    ctx.count(status)
    return FileTagged(path=path, file_id=file_id, how=how, status=status, **kw)


def _tag_all(ctx: _Ctx, paths: list[str]) -> Iterator[FileTagged]:
    """Phase 1 answers what it can from the store; phase 2 decodes the rest (once per content)."""
    queue: dict[str, list[tuple[str, int]]] = {}
    prints = ordered_map(lambda p: _printed(ctx.db, p), paths, workers=ctx.options.hash_workers, ahead=32)
    for fp in prints:
        event = _from_store(ctx, fp, queue)
        if event is not None:
            yield event
    if queue:
        yield from _embed_queue(ctx, queue)


def _from_store(ctx: _Ctx, fp: _Print, queue: dict[str, list[tuple[str, int]]]) -> FileTagged | None:
    """Record a file and answer from stored results; queue it (returns None) when audio is needed."""
    with ctx.db.transaction() as c:
        if fp.error:
            row = c.execute("SELECT id FROM lib_files WHERE path=?", (fp.path,)).fetchone()
            if row is None:
                return _tagged(ctx, fp.path, 0, "skipped", "error", error=fp.error)
            _set_result(c, ctx, int(row["id"]), status="error", error=fp.error)
            return _tagged(ctx, fp.path, int(row["id"]), "skipped", "error", error=fp.error)
        file_id = _upsert_file(c, fp)
        if fp.chroma is not None:
            fingerprints.save(c, fp.digest, fp.chroma)
        emb = records.find_embedding(c, fp.digest, ctx.key)
        if fp.digest in queue or emb is None or (emb["error"] and ctx.options.retry_errors):
            queue.setdefault(fp.digest, []).append((fp.path, file_id))
            return None
        if emb["error"]:
            _set_result(
                c,
                ctx,
                file_id,
                status="error",
                error=emb["error"],
                embedding_id=emb["id"],
                prediction_id=None,
                top_label=None,
                top_score=None,
            )
            return _tagged(ctx, fp.path, file_id, "skipped", "error", error=emb["error"])
        pred = records.find_prediction(c, emb["id"], ctx.labels_key)
    how = "skipped" if pred is not None else "rescored"
    if pred is None:
        stored = records.embedding_from_row(emb, fp.path)
        pred_id, top_label, top_score = _score(ctx, stored, emb["id"])
    else:
        pred_id, top_label, top_score = int(pred["id"]), pred["top_label"], float(pred["top_score"])
    with ctx.db.transaction() as c:
        status = _status(ctx, top_label, top_score)
        _set_result(
            c,
            ctx,
            file_id,
            status=status,
            error=None,
            embedding_id=emb["id"],
            prediction_id=pred_id,
            top_label=top_label,
            top_score=top_score,
            duration_s=emb["duration_s"],
            preprocess=ctx.key.preprocess,
        )
    return _tagged(ctx, fp.path, file_id, how, status, top_label=top_label, top_score=top_score)


def _predict(ctx: _Ctx, emb: AudioEmbedding) -> Prediction:
    pack = ctx.options.pack
    return ctx.model.get().score(emb, None if pack else ctx.options.labels, options=ctx.copts, pack=pack)


def _score(ctx: _Ctx, emb: AudioEmbedding, embedding_id: int) -> tuple[int, str, float]:
    pred = _predict(ctx, emb)
    with ctx.db.transaction() as c:
        pred_id = records.save_prediction(c, embedding_id, ctx.labels_key, pred)
    return pred_id, pred.top.label, pred.top.probability


def _embed_local(ctx: _Ctx, paths: list[str]) -> Iterator[tuple[Any, AudioEmbedding | AudioError]]:
    from ..stage import embed_many
    from .denoise import denoised_chunks

    classifier = ctx.model.get()
    decode = denoised_chunks(classifier) if ctx.options.denoise else None
    return embed_many(classifier, paths, options=ctx.copts, decode=decode)


def _embed_queue(ctx: _Ctx, queue: dict[str, list[tuple[str, int]]]) -> Iterator[FileTagged]:
    first_paths = [files[0][0] for files in queue.values()]
    by_path = {files[0][0]: digest for digest, files in queue.items()}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", AudioWarning)
        results = ctx.embedder(ctx, first_paths) if ctx.embedder else _embed_local(ctx, first_paths)
        for source, result in results:
            digest = by_path[str(source)]
            notes = [str(w.message) for w in caught if str(w.message).startswith(f"{source}:")]
            caught[:] = [w for w in caught if not str(w.message).startswith(f"{source}:")]
            if isinstance(result, tuple):  # (embedding, note) from a remote embedder
                result, remote_note = result
                notes += [remote_note] if remote_note else []
            yield from _store_embedded(ctx, digest, queue[digest], result, "; ".join(notes) or None)


def _store_embedded(
    ctx: _Ctx,
    digest: str,
    files: list[tuple[str, int]],
    result: AudioEmbedding | AudioError,
    note: str | None,
) -> Iterator[FileTagged]:
    """Write one content's embedding (or error), prediction and file rows in one transaction.

    The prediction comes from the full-precision vectors; the store keeps them as float16.
    """
    emb = result if isinstance(result, AudioEmbedding) else None
    pred = _predict(ctx, emb) if emb is not None else None
    error = result.reason if isinstance(result, AudioError) else None
    with ctx.db.transaction() as c:
        emb_id = records.save_embedding(c, digest, ctx.key, emb, error)
        pred_id = records.save_prediction(c, emb_id, ctx.labels_key, pred) if pred else None
        for _path, file_id in files:
            fields: dict[str, Any] = {
                "embedding_id": emb_id,
                "prediction_id": pred_id,
                "note": note,
                "preprocess": ctx.key.preprocess,
                "error": error,
            }
            if pred is None:
                fields.update(status="error", top_label=None, top_score=None)
            else:
                fields.update(
                    status=_status(ctx, pred.top.label, pred.top.probability),
                    top_label=pred.top.label,
                    top_score=pred.top.probability,
                    duration_s=emb.duration_s if emb else None,
                )
            _set_result(c, ctx, file_id, **fields)
    for path, file_id in files:
        if pred is None:
            yield _tagged(ctx, path, file_id, "embedded", "error", error=error)
        else:
            yield _tagged(
                ctx,
                path,
                file_id,
                "embedded",
                _status(ctx, pred.top.label, pred.top.probability),
                top_label=pred.top.label,
                top_score=pred.top.probability,
                note=note,
            )


def _file_all(ctx: _Ctx, file_ids: list[int], filing: FilingOptions) -> Iterator[FileFiled]:
    out = os.path.abspath(filing.sort_into)
    filing = replace(filing, sort_into=type(filing.sort_into)(out))
    ids = [i for i in file_ids if i]
    plan = plan_filing(ctx.db.conn, ids, filing, ctx.options.min_confidence, dict(ctx.copts.label_thresholds))
    if filing.skip_duplicates:
        from .dedupe import drop_duplicates, record_skips

        plan, skips = drop_duplicates(ctx.db, plan, out)
        if not filing.dry_run:
            record_skips(ctx.db, ctx.run_id, out, skips)
        for s in skips:
            ctx.count("duplicates_skipped")
            yield FileFiled(
                result=OpResult(op=s.op, state="skipped", error=f"same recording as {s.kept_path}")
            )
    if filing.dry_run:
        for p in plan:
            ctx.count("planned")
            yield FileFiled(result=OpResult(op=p, state="planned"))
        return
    check_writable(filing.sort_into)
    ctx.counts.setdefault("filed", 0)
    for result in execute(ctx.db, ctx.run_id, plan, out):
        ctx.count("filed" if result.state == "done" else "filing_failed")
        yield FileFiled(result=result)
