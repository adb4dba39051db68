"""Atomic writes: a project appears whole or not at all, and no user file is ever lost."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from scaffold.errors import TargetError, WriteError


@dataclass
class WriteReport:
    created: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)  # old content saved as <file>.orig
    unchanged: list[str] = field(default_factory=list)


def _mode(text: str) -> int:
    """rw for all but what the umask takes away; scripts (a #! first line) executable too."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if text.startswith("#!") else 0o666) & ~umask


def write_file(path: Path, text: str) -> None:
    """Write through a temporary file in the same folder, then rename over the target."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        os.chmod(tmp, _mode(text))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _fresh(target: Path, files: dict[str, str], report: WriteReport) -> None:
    """Write everything into a hidden sibling folder, then rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.dlgen-"))
    staging.chmod(_mode("#!"))  # mkdtemp makes it private; a project folder is not
    try:
        for rel, text in files.items():
            path = staging / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8", newline="\n")
            if text.startswith("#!"):
                path.chmod(_mode(text))
        if target.exists():
            target.rmdir()  # empty, checked by the caller
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    report.created = sorted(files)


def _merge_force(target: Path, files: dict[str, str], report: WriteReport) -> None:
    """--force into a non-empty folder: create what is missing, back up what differs."""
    for rel, text in files.items():
        path = target / rel
        if path.is_dir():
            raise TargetError(f"cannot write {path}: a folder of that name is in the way")
        if path.exists():
            old = path.read_text(encoding="utf-8", errors="surrogateescape")
            if old == text:
                report.unchanged.append(rel)
                continue
            shutil.copy2(path, path.with_name(path.name + ".orig"))
            write_file(path, text)
            report.replaced.append(rel)
        else:
            write_file(path, text)
            report.created.append(rel)


def write_project(target: Path, files: dict[str, str], force: bool = False) -> WriteReport:
    """Write the rendered files under target; refuse a non-empty target unless force."""
    report = WriteReport()
    if target.exists() and not target.is_dir():
        raise TargetError(f"{target} exists and is not a folder")
    nonempty = target.is_dir() and any(target.iterdir())
    if nonempty and not force:
        raise TargetError(f"{target} exists and is not empty; use --force to write into it")
    try:
        if nonempty:
            _merge_force(target, files, report)
        else:
            _fresh(target, files, report)
    except OSError as e:
        reason = e.strerror or str(e)
        where = e.filename or target
        raise WriteError(f"cannot write the project to {target}: {reason} ({where})") from None
    return report


def write_one(path: Path, text: str) -> None:
    """Write one file atomically, turning OS errors into a WriteError."""
    try:
        write_file(path, text)
    except OSError as e:
        raise WriteError(f"cannot write {path}: {e.strerror or e}") from None
