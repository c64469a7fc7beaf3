"""earmark tag --ray: the same records as a local run, on a local Ray cluster started by the test."""

from __future__ import annotations

import json

import numpy as np
import pytest

from earmark.library import FileTagged, ModelRef, TagOptions
from earmark.store import Database
from helpers import LABELS, TINY_MODEL

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture(scope="module")
def ray_cluster():  # type: ignore[no-untyped-def]
    ray = pytest.importorskip("ray")
    # "local": always a cluster of our own, never one a previous process left running on the machine
    ray.init(
        address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False
    )
    yield ray
    ray.shutdown()


def _records(db: Database) -> dict[str, tuple[object, ...]]:
    rows = db.conn.execute(
        "SELECT f.path, f.status, f.top_label, f.top_score, f.error, e.spans, e.vectors, p.scores FROM lib_files f"
        " LEFT JOIN lib_embeddings e ON e.id=f.embedding_id LEFT JOIN lib_predictions p ON p.id=f.prediction_id"
    ).fetchall()
    return {r[0]: tuple(r[1:]) for r in rows}


@pytest.mark.slow
def test_ray_pipeline_writes_the_same_records_as_a_local_run(ray_cluster, tagged_library, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from earmark.distributed import RayOptions, tag_paths_ray

    root, manifest, local_db, _ = tagged_library
    # a mix: each sound, each format, the multi-window clips, the corrupt files
    picked = [rel for i, rel in enumerate(manifest) if i % 9 == 0 or manifest[rel] == "error" or "007" in rel]
    files = [str(root / rel) for rel in picked]
    db = Database(tmp_path / "ray.db")
    events = list(
        tag_paths_ray(
            db,
            files,
            TagOptions(labels=tuple(LABELS)),
            ModelRef(str(TINY_MODEL)),
            None,
            RayOptions(actors=1, files_per_batch=3),
        )
    )
    tagged = [e for e in events if isinstance(e, FileTagged)]
    assert len(tagged) == len(files) and {e.how for e in tagged} == {"embedded"}
    remote, local = _records(db), _records(Database(local_db))
    assert set(remote) == set(files)
    for path in files:
        status, top, score, error, spans, vectors, scores = remote[path]
        assert (status, top, error, spans) == (local[path][:2] + local[path][3:5]), path
        # windows batched across files on the actor vs per file locally: equal to float rounding (stored as float16)
        if vectors is not None:
            mine, theirs = np.frombuffer(vectors, np.float16), np.frombuffer(local[path][5], np.float16)
            np.testing.assert_allclose(mine.astype(np.float32), theirs.astype(np.float32), atol=2e-3)
        # label embeddings come from a model with other torch thread counts: equal to float rounding
        assert score == (None if score is None else pytest.approx(local[path][2], abs=1e-5))
        if scores:
            mine, theirs = json.loads(scores), json.loads(local[path][6])
            assert [s[0] for s in mine] == [s[0] for s in theirs]
            assert [v for s in mine for v in s[1:]] == pytest.approx(
                [v for s in theirs for v in s[1:]], abs=1e-5
            )
    assert sum(r[0] == "error" for r in remote.values()) == sum(manifest[rel] == "error" for rel in picked)
    # a second run through Ray skips everything: the records are the library's own
    again = [
        e
        for e in tag_paths_ray(db, files, TagOptions(labels=tuple(LABELS)), ModelRef(str(TINY_MODEL)))
        if isinstance(e, FileTagged)
    ]
    assert {e.how for e in again} == {"skipped"}
