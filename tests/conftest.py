"""Shared helpers: render projects in memory, write them, and import them in-process."""

from __future__ import annotations

import functools
import importlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scaffold.generate import generate, render

# Under pytest-xdist each worker gets one core's worth of threads: two workers each
# spinning two OpenMP threads on two cores run ten times slower, not twice.
if "PYTEST_XDIST_WORKER" in os.environ:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
import scaffold.generate  # noqa: E402
import scaffold.update  # noqa: E402
from scaffold.spec import build_spec  # noqa: E402

_RENDER_FILES = scaffold.generate.render_files


@functools.cache
def _rendered(spec):
    return _RENDER_FILES(spec)


def _render_files_once(spec):
    """Rendering is a pure function of the (frozen) spec while the templates stand still, and
    many tests render the same pairwise rows: render each once per test process. A copy, so
    that a test that edits its files edits only its own."""
    return dict(_rendered(spec))


scaffold.generate.render_files = scaffold.update.render_files = _render_files_once


def make_project(root: Path, name: str, **options) -> Path:
    """Generate a project under root and return its folder."""
    target = root / name
    generate(build_spec(name, **options), target)
    return target


def tree(root: Path) -> dict[str, str]:
    """Every file under root, by relative path: a project as render() returns it."""
    return {
        p.relative_to(root).as_posix(): p.read_text(encoding="utf-8")
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def wait_until(condition, timeout: float, interval: float = 0.01) -> bool:
    """Poll condition() until it holds or timeout seconds pass; return whether it held."""
    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            return False
        time.sleep(interval)
    return True


def assert_ruff_clean(folder: Path, first_party: tuple[str, ...] = ("proj",)) -> None:
    """One ruff run over every .py file under folder, with the rules a generated project's
    pyproject.toml selects (pyflakes, pycodestyle errors, bugbear, pyupgrade, isort).
    Files copied out of their project (flat, as the matrix tests write them) name their
    packages first_party, so that isort sorts their imports as the project does."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ruff",
            "check",
            "--no-cache",
            "--isolated",
            "--select",
            "E4,E7,E9,F,B,UP,I",
            "--line-length",
            "88",
            "--target-version",
            "py311",
            "--config",
            f"lint.isort.known-first-party = {list(first_party)!r}",
            ".",
        ],
        cwd=folder,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout


def assert_project_tests_pass(root: Path, timeout: int = 600) -> None:
    """Run a generated project's own test suite in a subprocess, as its user would."""
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


def run_project_tests(root: Path, package: str) -> tuple[int, str]:
    """Run a generated project's own test suite in this interpreter, as `pytest` inside the
    project would (its pyproject's settings apply), without paying torch's import again.
    Returns pytest's exit code and its report."""
    import contextlib
    import io

    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            code = pytest.main(
                [
                    str(root / "tests"),
                    "-q",
                    "-p",
                    "no:cacheprovider",
                    "-p",
                    "no:xdist",
                    "--rootdir",
                    str(root),
                    "-c",
                    str(root / "pyproject.toml"),
                    "--import-mode=importlib",
                ]
            )
    finally:  # forget the project, so that the next one of another name starts clean
        for name in [m for m in sys.modules if m.split(".")[0] in (package, "tests")]:
            del sys.modules[name]
    return int(code), out.getvalue()


class HostReads:
    """Count the reads of tensor values back to the host (.item(), bool(t), float(t), .tolist(),
    .cpu(), ...) per training step. On a GPU each of them stalls the CPU until the device has
    caught up. Reads made while a batch is put together (the project's data.py and the
    DataLoader, on CPU tensors) are not device syncs and are not counted."""

    METHODS = ("item", "tolist", "__bool__", "__float__", "__int__", "cpu", "numpy")

    def __init__(self, data_file: str):
        self.data_file, self.step, self.reads = data_file, 0, {}

    def _wrap(self, name):
        import torch

        real = getattr(torch.Tensor, name)

        def counted(tensor, *args, **kwargs):
            frame = sys._getframe(1)
            while frame is not None:
                where = frame.f_code.co_filename
                if where == self.data_file or "torch/utils/data" in where:
                    break
                frame = frame.f_back
            else:
                self.reads[self.step] = self.reads.get(self.step, 0) + 1
            return real(tensor, *args, **kwargs)

        return real, counted

    def __enter__(self):
        import torch

        self.saved = {}
        for name in self.METHODS:
            self.saved[name], counted = self._wrap(name)
            setattr(torch.Tensor, name, counted)
        return self

    def __exit__(self, *exc):
        import torch

        for name, real in self.saved.items():
            setattr(torch.Tensor, name, real)


class ProjectImport:
    """Import a generated project's modules in this interpreter (torch is imported once per
    test worker), then forget them so the next project of another name starts clean."""

    def __init__(self, path: Path, package: str):
        self.path, self.package = path, package

    def __enter__(self):
        sys.path.insert(0, str(self.path))
        return self

    def module(self, name: str):
        return importlib.import_module(f"{self.package}.{name}")

    def __exit__(self, *exc):
        sys.path.remove(str(self.path))
        for mod in [
            m for m in sys.modules if m == self.package or m.startswith(self.package + ".")
        ]:
            del sys.modules[mod]


@pytest.fixture
def project(tmp_path):
    """project(name, **options) -> ProjectImport of a freshly generated project."""

    def make(name: str, **options) -> ProjectImport:
        path = make_project(tmp_path, name, **options)
        return ProjectImport(path, build_spec(name, **options).package)

    return make


__all__ = ["ProjectImport", "make_project", "render"]


@functools.cache
def _pristine_mlflow_db() -> bytes:
    """An MLflow SQLite store with its tables made: creating them runs every schema migration
    (about 3 s); copying the finished file costs nothing."""
    import tempfile

    from mlflow.tracking import MlflowClient

    with tempfile.TemporaryDirectory() as tmp:
        MlflowClient(f"sqlite:///{tmp}/mlflow.db").search_experiments()
        return (Path(tmp) / "mlflow.db").read_bytes()


def seed_mlflow(out_dir: Path) -> None:
    """Put a fresh MLflow store where a --tracker mlflow run makes its own (out_dir/mlflow.db):
    the run uses it as it would the one it makes, without paying the migrations again."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "mlflow.db").write_bytes(_pristine_mlflow_db())
