"""`earmark tag --pack`: a few-shot classifier pack tags a library, re-using stored embeddings.

The pack (``fitted_pack``) learned "class A" (beeps) and "class B" (hums) from
five examples each: words the tiny model never read, so zero-shot tagging with
those labels cannot tell them apart and the pack can.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from click.testing import CliRunner

from earmark.adapt.packs import load_pack
from earmark.cli import cli
from earmark.store import Database

PACK_LABELS = ["class A", "class B", "noise"]
EXPECTED = {"class_a": "class A", "class_b": "class B", "noise": "noise"}


def _tag(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["tag", *args, "--threads", "1"])
    return result.exit_code, result.output


def _rows(db: Path) -> dict[str, dict[str, object]]:
    conn = Database(db).conn
    return {
        r["path"]: dict(r) for r in conn.execute("SELECT path, status, top_label, top_score FROM lib_files")
    }


def test_tag_with_a_pack_files_what_zero_shot_cannot_name(
    nonsense_sets, fitted_pack, tiny_model, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    _, held, _ = nonsense_sets
    lib = tmp_path / "lib"
    shutil.copytree(held, lib)
    db = tmp_path / "lib.db"
    common = ["-m", tiny_model, "--db", str(db)]
    # zero-shot with the same words first: the tiny model cannot tell "class A" from "class B"
    code, out = _tag(str(lib), "-l", ", ".join(PACK_LABELS), *common)
    assert code == 0, out
    zero = _rows(db)
    zero_right = sum(
        r["top_label"] == EXPECTED[Path(p).parent.name] and r["status"] == "auto" for p, r in zero.items()
    )

    code, out = _tag(str(lib), "--pack", str(fitted_pack), *common, "--sort-into", str(tmp_path / "out"))
    assert code == 0, out
    assert (
        "24 rescored" in out and "embedded" not in out
    )  # stored embeddings re-scored: nothing decoded again
    packed = _rows(db)
    assert len(packed) == 24 and {r["top_label"] for r in packed.values()} <= set(PACK_LABELS)
    right = sum(
        r["top_label"] == EXPECTED[Path(p).parent.name] and r["status"] == "auto" for p, r in packed.items()
    )
    wrong = sum(
        r["top_label"] != EXPECTED[Path(p).parent.name] and r["status"] == "auto" for p, r in packed.items()
    )
    assert right >= 20 and wrong == 0, packed  # confident and right; a doubtful one goes to review
    assert right > zero_right + 6, (right, zero_right)  # seen: 23 right with the pack, 8 zero-shot
    filed = {f.name for f in (tmp_path / "out" / "class B").iterdir()}
    assert filed and all(name.startswith("class_b") for name in filed)

    # the run records which pack tagged, and a second run with it skips every file
    run = Database(db).conn.execute("SELECT options FROM lib_runs ORDER BY id DESC LIMIT 1").fetchone()
    assert json.loads(run["options"])["pack"]["digest"] == load_pack(fitted_pack).digest
    code, out = _tag(str(lib), "--pack", str(fitted_pack), *common)
    assert code == 0 and "24 skipped" in out, out

    # a re-fitted pack (here: another "none of these" floor) scores again instead of reusing old answers
    doc = json.loads(fitted_pack.read_text())
    doc["reject_cosine"] = 0.99  # stricter than any cosine: everything becomes doubtful
    strict = tmp_path / "strict.pack.json"
    strict.write_text(json.dumps(doc))
    code, out = _tag(str(lib), "--pack", str(strict), *common)
    assert code == 0 and "24 rescored" in out, out
    assert {r["status"] for r in _rows(db).values()} == {"review"}


def test_tag_pack_errors_say_what_to_do(nonsense_sets, fitted_pack, tiny_model, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _, held, _ = nonsense_sets
    db = tmp_path / "lib.db"
    common = ["-m", tiny_model, "--db", str(db)]
    code, out = _tag(str(held / "noise"), "--pack", str(fitted_pack), "-l", "dog, cat", *common)
    assert code != 0 and "tags with its own labels (class A, class B, noise)" in out
    assert not db.exists()  # refused before the library was touched
    # a pack fitted on another model: refused when the model loads, before any file gets an answer
    doc = json.loads(fitted_pack.read_text())
    doc["text"]["base64"] = doc["directions"]["base64"]
    other = tmp_path / "other.pack.json"
    other.write_text(json.dumps(doc))
    code, out = _tag(str(held / "noise"), "--pack", str(other), *common)
    assert code != 0 and "was fitted on" in out and "computes different embeddings" in out
    rows = _rows(db)
    assert rows and all(r["top_label"] is None for r in rows.values())
