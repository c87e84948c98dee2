"""The package as users get it: an sdist that carries the .pyx (no generated C), a wheel built
from that sdist with the compiled codec, a pure-Python wheel, each importable once installed."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import fastws

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def run(*args: str | Path, cwd: Path = REPO, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert proc.returncode == 0, f"{args}: {proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def build(kind: str, source: Path, out: Path, env: dict[str, str] | None = None) -> Path:
    # --no-isolation: the test venv already has the build requirements (pyproject.toml);
    # a fresh clone's `make` installs them there.
    run(sys.executable, "-m", "build", f"--{kind}", "--no-isolation", "-o", out, source, env=env)
    (artifact,) = out.glob("*.tar.gz" if kind == "sdist" else "*.whl")
    return artifact


def installed_python(tmp: Path, wheel: Path) -> Path:
    venv = tmp / f"venv-{wheel.stem}"
    run(sys.executable, "-m", "venv", venv)
    python = venv / "bin" / "python"
    run(python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel)
    return python


def describe(python: Path, cwd: Path) -> str:
    # Run outside the repository so that only the installed package can be imported, and
    # without the suite's codec switches (FASTWS_REQUIRE_EXTENSIONS would refuse the pure wheel).
    env = {k: v for k, v in os.environ.items() if not k.startswith("FASTWS_")}
    proc = subprocess.run(
        [
            str(python),
            "-c",
            # find_spec: which file `import fastws.ws.protocol` would load (importing it needs
            # httptools, which these --no-deps installs leave out).
            "import fastws, fastws.ws.frames as f, importlib.util as u;"
            "origin = u.find_spec('fastws.ws.protocol').origin;"
            "build = 'source' if origin.endswith('.py') else 'compiled';"
            "print(fastws.__version__, f.IMPLEMENTATION, build)",
        ],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_sdist_then_wheel_then_install(tmp_path: Path) -> None:
    sdist = build("sdist", REPO, tmp_path / "sdist")
    with tarfile.open(sdist) as tar:
        names = {Path(n).relative_to(Path(n).parts[0]).as_posix() for n in tar.getnames()}
    for required in (
        "fastws/_speedups.pyx",
        "fastws/_speedups.pyi",
        "fastws/_speedups.pxd",
        "fastws/_mask.h",
        "fastws/ws/protocol.pxd",
        "fastws/ws/session.pxd",
        "fastws/ws/pubsub.pxd",
        "fastws/py.typed",
        "setup.py",
        "pyproject.toml",
        "README.md",
    ):
        assert required in names, required
    assert not any(n.endswith((".c", ".so", ".html")) for n in names), sorted(names)

    unpacked = tmp_path / "unpacked"
    with tarfile.open(sdist) as tar:
        tar.extractall(unpacked, filter="data")
    (source,) = unpacked.iterdir()
    wheel = build("wheel", source, tmp_path / "wheel")
    with zipfile.ZipFile(wheel) as whl:
        names = whl.namelist()
    for module in ("fastws/_speedups.", "fastws/ws/protocol."):
        assert any(n.startswith(module) and n.endswith(".so") for n in names), module
    python = installed_python(tmp_path, wheel)
    assert describe(python, tmp_path) == f"{fastws.__version__} cython compiled"


def test_pure_python_wheel(tmp_path: Path) -> None:
    wheel = build("wheel", REPO, tmp_path / "wheel", env={"FASTWS_NO_EXTENSIONS": "1"})
    assert wheel.name.endswith("-py3-none-any.whl"), wheel.name
    with zipfile.ZipFile(wheel) as whl:
        assert not any(n.endswith(".so") for n in whl.namelist())
    python = installed_python(tmp_path, wheel)
    assert describe(python, tmp_path) == f"{fastws.__version__} python source"
