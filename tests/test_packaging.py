"""`python -m build` makes a wheel and an sdist that install in a fresh venv and run `earmark classify`.

The fresh venvs see this environment's site-packages through a ``.pth`` line, so torch and the other
dependencies are not downloaded again (nothing beyond PyPI, and here not even that): pip installs the
built artifact itself with ``--no-index``, and ``pip check`` confirms its dependencies are satisfied.
"""

from __future__ import annotations

import email
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

from helpers import ROOT, TINY_MODEL, sound_file

pytestmark = pytest.mark.slow

EXTRAS = {"server", "ui", "monitor", "ray", "eval", "tag", "all"}


def _run(*cmd: str | Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    done = subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, env=env, cwd=cwd, timeout=900, check=False
    )
    assert done.returncode == 0, (
        f"{' '.join(map(str, cmd))} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )
    return done.stdout


def _clone(dest: Path) -> Path:
    """The repository's files as a fresh clone has them (tracked and not ignored), nothing built."""
    files = _run("git", "ls-files", "-co", "--exclude-standard", "-z", cwd=ROOT).split("\0")
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    return dest


def _venv(path: Path) -> Path:
    """A fresh venv without pip that sees this environment's packages after its own."""
    venv.EnvBuilder(with_pip=False).create(path)
    python = path / "bin" / "python"
    purelib = _run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").strip()
    Path(purelib, "_earmark_test_shared.pth").write_text(
        "\n".join(dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])) + "\n"
    )
    return python


def _clean_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # the installed artifact, not this checkout's src/
    env["PIP_NO_INDEX"] = "1"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def test_build_makes_a_wheel_and_sdist_that_install_and_classify(tmp_path: Path) -> None:
    from packaging.requirements import Requirement

    import earmark

    pyproject = (ROOT / "pyproject.toml").read_text()
    import tomllib

    build_req = Requirement(tomllib.loads(pyproject)["build-system"]["requires"][0])
    import setuptools

    assert setuptools.__version__ in build_req.specifier, (
        f"this environment's setuptools {setuptools.__version__} does not meet the build requirement {build_req}"
    )
    src = _clone(tmp_path / "clone")
    dist = tmp_path / "dist"
    # the sdist first, then the wheel built from the sdist: a file missing from the sdist fails here
    _run(sys.executable, "-m", "build", "--no-isolation", "--outdir", dist, src, env=_clean_env())
    wheels, sdists = list(dist.glob("*.whl")), list(dist.glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, f"build made {sorted(p.name for p in dist.iterdir())}"
    assert wheels[0].name.startswith(f"earmark-{earmark.__version__}-"), (
        "the version comes from earmark.__version__"
    )

    with zipfile.ZipFile(wheels[0]) as whl:
        names = set(whl.namelist())
        meta_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        meta = email.message_from_bytes(whl.read(meta_name))
    assert {"earmark/py.typed", "earmark/server/mic.js", "earmark/cli/__init__.py"} <= names
    assert meta["Version"] == earmark.__version__
    assert meta["License-Expression"] == "Apache-2.0", "license is an SPDX expression (PEP 639)"
    assert set(meta.get_all("Provides-Extra")) == EXTRAS, "extras are user features: no dev, no onnx"

    wav = sound_file(tmp_path, "beep", 3)
    for artifact in (wheels[0], sdists[0]):
        python = _venv(tmp_path / f"venv-{artifact.suffix.lstrip('.')}")
        env = _clean_env()
        # --no-deps: the dependencies are this environment's (checked next); --force-reinstall: the
        # checkout's own editable earmark is visible too, and must not count as installed
        _run(sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--force-reinstall",
             "--no-build-isolation", artifact, env=env)  # fmt: skip
        where = _run(python, "-c", "import earmark; print(earmark.__file__)", env=env).strip()
        assert where.startswith(str(python.parent.parent)), f"{artifact.name}: earmark imported from {where}"
        _run(sys.executable, "-m", "pip", "--python", python, "check", env=env)
        out = _run(
            python.parent / "earmark", "classify", wav, "-l", "beep, hum, noise", "-m", TINY_MODEL, env=env
        )
        assert "beep" in out, f"{artifact.name}: earmark classify printed:\n{out}"
