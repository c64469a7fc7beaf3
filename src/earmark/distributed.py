"""``earmark tag --ray``: the same tagging as a Ray Data pipeline, for when one machine is not enough.

Only the expensive middle moves to the cluster; listing, fingerprinting,
skipping, scoring against labels and writing happen on the driver exactly as in
:func:`earmark.library.tag_paths`, so the records are the same::

    file list ─► ray.data.from_items ─► map(decode) ─► map_batches(model actor pool) ─► driver ─► SQLite
                                       (CPU tasks)     (CPU or GPU per actor)

Each actor holds one :class:`~earmark.Classifier` and embeds each file's
windows with ``Classifier.embed`` on the decoded samples, so a file's
embedding is the one a local run computes (windows never mix across files).

Pointing at a cluster: ``earmark tag DIR --ray=ray://HEAD:10001`` (Ray
client), ``--ray=auto`` (the cluster this machine belongs to, e.g. under
``ray start``), or plain ``--ray`` (``RAY_ADDRESS`` if set, else a local
cluster started for the run). Every node needs ``pip install 'earmark[ray]'``
and the model: a hub id cached on each node, or a folder at the same path on
every node (a shared filesystem, or ``earmark model import`` on each). Files
are read by path on the workers, so they must be visible there at the same
path too (a shared mount); the database stays on the driver.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import AudioError, ConfigError, MissingExtraError

__all__ = ["RayOptions", "tag_paths_ray"]

log = logging.getLogger("earmark")


@dataclass(frozen=True, kw_only=True)
class RayOptions:
    """How the Ray pipeline runs.

    Attributes:
        address: ``None`` (``RAY_ADDRESS`` or a new local cluster), ``auto``, or ``ray://host:port``.
        actors: model actors in the pool (default: half the cluster's CPUs, at least 1).
        cpus_per_actor: CPUs reserved by each model actor (also its torch threads).
        gpus_per_actor: GPUs per model actor (0 for CPU).
        files_per_batch: files handed to an actor per call.
        device: model device inside actors (default: CUDA when the actor has a GPU).
    """

    address: str | None = None
    actors: int | None = None
    cpus_per_actor: float = 1.0
    gpus_per_actor: float = 0.0
    files_per_batch: int = 4
    device: str | None = None


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise MissingExtraError("earmark tag --ray", "ray") from None
    return ray


def _connect(opts: RayOptions) -> None:
    ray = _ray()
    if ray.is_initialized():
        return
    address = opts.address or os.environ.get("RAY_ADDRESS") or "local"
    # "local", never None: ray.init(None) joins whatever cluster /tmp/ray names, even one a dead process left
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    except ConnectionError as ex:
        raise ConfigError(f"cannot reach a Ray cluster at {address!r}: {ex}") from None
    data_ctx = ray.data.DataContext.get_current()
    data_ctx.enable_progress_bars = False  # earmark draws its own
    data_ctx.preserve_order = False


def _decode_row(row: dict[str, Any], *, rate: int, denoise: bool) -> dict[str, Any]:
    """Ray task body: one file path -> float32 mono samples at the model rate (or the error)."""
    from . import audio

    out = {"path": row["path"], "pcm": b"", "error": "", "note": ""}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            samples = audio.decode(row["path"], sample_rate=rate)
            if denoise:
                from .library.denoise import denoise as reduce_noise

                samples = reduce_noise(samples, rate)
            out["pcm"] = np.ascontiguousarray(samples, np.float32).tobytes()
        except AudioError as ex:
            out["error"] = ex.reason
    out["note"] = "; ".join(str(w.message) for w in caught if issubclass(w.category, audio.AudioWarning))
    return out


class _Embedder:
    """Ray actor: holds one model and embeds decoded files, one file's windows at a time."""

    def __init__(self, model: str, device: str | None, threads: int, window_s: float, hop_s: float) -> None:
        from .classify import Classifier
        from .types import ClassifyOptions

        self.clf = Classifier(model, device=device, threads=threads, throughput=True)
        self.opts = ClassifyOptions(window_s=window_s, hop_s=hop_s)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {
            k: [] for k in ("path", "error", "note", "spans", "vectors", "duration_s")
        }
        for path, pcm, error, note in zip(
            batch["path"], batch["pcm"], batch["error"], batch["note"], strict=False
        ):
            spans, vectors, duration = b"", b"", 0.0
            if not error:
                samples = np.frombuffer(pcm, np.float32)
                try:
                    emb = self.clf.embed(
                        samples, input_rate=self.clf.sample_rate, name=str(path), options=self.opts
                    )
                    spans = np.asarray(emb.spans_s, np.float32).tobytes()
                    vectors, duration = emb.vectors.astype(np.float32).tobytes(), emb.duration_s
                except AudioError as ex:
                    error = ex.reason
            for key, value in zip(
                out, (str(path), str(error), str(note), spans, vectors, duration), strict=False
            ):
                out[key].append(value)
        return out


def _ray_embedder(opts: RayOptions) -> Any:
    def embed(ctx: Any, paths: list[str]) -> Iterator[tuple[str, Any]]:
        ray = _ray()
        _connect(opts)
        rate = _model_rate(ctx.model.name)
        actors = opts.actors or max(1, int(ray.cluster_resources().get("CPU", 2) // 2))
        ds = ray.data.from_items([{"path": p} for p in paths])
        # decode tasks ask for less CPU than the actors, which also keeps Ray from fusing them into the actors
        ds = ds.map(_decode_row, fn_kwargs={"rate": rate, "denoise": ctx.options.denoise}, num_cpus=0.5)
        gpus = {"num_gpus": opts.gpus_per_actor} if opts.gpus_per_actor else {}
        ds = ds.map_batches(
            _Embedder,
            batch_size=opts.files_per_batch,
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_cpus=opts.cpus_per_actor,
            **gpus,
            fn_constructor_kwargs={
                "model": ctx.model.name,
                "device": opts.device,
                "threads": max(1, int(opts.cpus_per_actor)),
                "window_s": ctx.copts.window_s,
                "hop_s": ctx.copts.hop_s,
            },
        )
        for row in ds.iter_rows():
            yield row["path"], (_result(row, rate), row["note"] or None)

    return embed


def _model_rate(model: str) -> int:
    """The model's sample rate from its feature-extractor config, without loading it."""
    import json

    from .models import resolve

    with open(os.path.join(resolve(model), "preprocessor_config.json"), encoding="utf-8") as f:
        return int(json.load(f).get("sampling_rate", 48_000))


def _result(row: dict[str, Any], rate: int) -> Any:
    from .classify import AudioEmbedding

    if row["error"]:
        return AudioError(row["path"], row["error"])
    spans = np.frombuffer(row["spans"], np.float32).reshape(-1, 2)
    vectors = np.frombuffer(row["vectors"], np.float32).reshape(len(spans), -1)
    return AudioEmbedding(
        source=row["path"],
        spans_s=tuple((float(a), float(b)) for a, b in spans),
        vectors=vectors,
        duration_s=float(row["duration_s"]),
        sample_rate=rate,
    )


def tag_paths_ray(
    db: Any,
    roots: Iterable[Any],
    options: Any,
    model: Any,
    filing: Any = None,
    ray_options: RayOptions | None = None,
) -> Iterator[Any]:
    """:func:`earmark.library.tag_paths` with decoding and the model on a Ray cluster.

    Args:
        db: the library :class:`~earmark.store.Database`.
        roots: folders and files (visible at the same paths on the workers).
        options: :class:`~earmark.library.TagOptions`.
        model: a :class:`~earmark.library.ModelRef` (loaded on the driver only to embed labels).
        filing: :class:`~earmark.library.FilingOptions` or None.
        ray_options: cluster address and actor pool (:class:`RayOptions`).

    Yields:
        The same events as ``tag_paths``.
    """
    from .library.tag import tag_paths

    _ray()  # fail before any work if the extra is missing
    return tag_paths(db, roots, options, model, filing, embedder=_ray_embedder(ray_options or RayOptions()))
