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
    replaced: list[str] = field(default_factory=list)  # old content kept: see backups
    unchanged: list[str] = field(default_factory=list)
    backups: dict[str, str] = field(default_factory=dict)  # file -> FILE.orig (or .orig.N)


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


def inside(root: Path, rel: str) -> Path:
    """root / rel, or a TargetError when that path, through any symlink, leads out of root:
    dlgen never reads, writes or deletes a file outside the project."""
    path = root / rel
    try:
        real, real_root = path.resolve(), root.resolve()
    except (OSError, RuntimeError) as e:  # a symlink loop, a name too long, ...
        raise TargetError(f"cannot follow {path}: {getattr(e, 'strerror', None) or e}") from None
    if Path(rel).is_absolute() or not real.is_relative_to(real_root):
        raise TargetError(f"refusing to touch {rel}: it leads out of {root} (to {real})")
    return path


def backup_name(path: Path, taken: set[Path] | frozenset[Path] = frozenset()) -> Path:
    """FILE.orig, else FILE.orig.1, FILE.orig.2, ...: the first name no file holds."""
    candidate, n = path.with_name(path.name + ".orig"), 0
    while candidate.exists() or candidate.is_symlink() or candidate in taken:
        n += 1
        candidate = path.with_name(f"{path.name}.orig.{n}")
    return candidate


@dataclass
class _Step:
    path: Path
    text: str | None  # None: delete
    backup: bool  # keep the old content under a free FILE.orig name
    tmp: Path | None = None  # the new content, staged beside the target
    aside: Path | None = None  # where the old file goes: its backup, or a hidden name
    done: str = ""  # "", "aside" or "placed": what to undo


def apply_changes(
    root: Path, changes: dict[str, str | None], backup: bool = False
) -> dict[str, Path]:
    """Write (text) or delete (None) each root-relative path: all of them, or none.

    Everything is staged first: each new text in a temporary file beside its target, each
    target checked to be inside root, a file (not a folder) and writable. Only then are
    the old files moved aside and the new ones renamed into place; a failure, or Ctrl-C,
    at any point puts every file back as it was. With backup, a file whose content
    changes keeps its old content under the first free name of FILE.orig, FILE.orig.1, ...
    Return {rel: backup path} of the files backed up."""
    steps = {rel: _Step(inside(root, rel), text, backup) for rel, text in changes.items()}
    made: list[Path] = []  # folders created, to remove again on failure
    taken: set[Path] = set()
    try:
        for rel, step in steps.items():
            _stage(root, rel, step, made, taken)
        for step in steps.values():
            if step.aside is not None:
                os.replace(step.path, step.aside)
                step.done = "aside"
            if step.tmp is not None:
                os.replace(step.tmp, step.path)
                step.done, step.tmp = "placed", None
    except BaseException:
        _undo(list(steps.values()), made)
        raise
    for step in steps.values():  # committed: drop the hidden copies, keep the backups
        if step.aside is not None and not step.backup:
            step.aside.unlink(missing_ok=True)
    return {rel: s.aside for rel, s in steps.items() if s.backup and s.aside is not None}


def _stage(root: Path, rel: str, step: _Step, made: list[Path], taken: set[Path]) -> None:
    path = step.path
    if path.is_dir() and not path.is_symlink():
        raise TargetError(f"cannot write {path}: a folder of that name is in the way")
    exists = path.exists() or path.is_symlink()
    if exists and not os.access(path, os.W_OK, follow_symlinks=False):
        raise TargetError(f"cannot write {path}: it is read-only; make it writable first")
    if step.text is not None:
        for folder in reversed([path.parent, *path.parent.parents]):
            if folder.is_relative_to(root) and not folder.is_dir():
                folder.mkdir()  # FileExistsError when a file is in the way
                made.append(folder)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        step.tmp = Path(tmp)
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(step.text)
        os.chmod(tmp, _mode(step.text))
    if exists:
        step.backup = step.backup and step.text is not None
        if step.backup:
            step.aside = backup_name(path, taken)
            taken.add(step.aside)
        else:  # a hidden name beside it, reserved now, so that moving it aside cannot fail
            fd, aside = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".old")
            os.close(fd)
            step.aside = Path(aside)
    if path.parent.is_dir() and not os.access(path.parent, os.W_OK):
        raise TargetError(f"cannot write in {path.parent}: the folder is read-only")


def _undo(steps: list[_Step], made: list[Path]) -> None:
    """Put every file back as it was before apply_changes, and remove what it created."""
    for step in reversed(steps):
        try:
            if step.done == "placed" and step.aside is None:
                step.path.unlink(missing_ok=True)  # it did not exist before
            if step.done and step.aside is not None:
                os.replace(step.aside, step.path)
            elif step.aside is not None and not step.backup:
                step.aside.unlink(missing_ok=True)  # the reserved hidden name
            if step.tmp is not None:
                step.tmp.unlink(missing_ok=True)
        except OSError:
            pass  # best effort: the rest is still put back
    for folder in reversed(made):
        try:
            folder.rmdir()
        except OSError:
            pass


def _fresh(target: Path, files: dict[str, str], report: WriteReport) -> None:
    """A new folder: write everything into a hidden sibling, then rename it into place. An
    existing empty folder (`dlgen new .`) is written into, so it keeps its mode and the
    shell of a user standing in it stays valid."""
    if target.is_dir():
        apply_changes(target, dict(files))
        report.created = sorted(files)
        return
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
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    report.created = sorted(files)


def _merge_force(target: Path, files: dict[str, str], report: WriteReport) -> None:
    """--force into a non-empty folder: create what is missing, back up what differs; all
    of it, or nothing."""
    changes: dict[str, str | None] = {}
    for rel, text in files.items():
        path = inside(target, rel)
        if path.is_file():
            old = path.read_bytes().decode("utf-8", errors="surrogateescape")
            if old == text:
                report.unchanged.append(rel)
                continue
            report.replaced.append(rel)
        else:
            report.created.append(rel)
        changes[rel] = text
    saved = apply_changes(target, changes, backup=True)
    report.backups = {rel: path.relative_to(target).as_posix() for rel, path in saved.items()}


def write_project(target: Path, files: dict[str, str], force: bool = False) -> WriteReport:
    """Write the rendered files under target; refuse a non-empty target unless force."""
    report = WriteReport()
    try:
        if target.exists() and not target.is_dir():
            raise TargetError(f"{target} exists and is not a folder")
        nonempty = target.is_dir() and any(target.iterdir())
        if nonempty and not force:
            raise TargetError(f"{target} exists and is not empty; use --force to write into it")
        if nonempty:
            _merge_force(target, files, report)
        else:
            _fresh(target, files, report)
    except OSError as e:
        reason = e.strerror or str(e)
        where = e.filename or target
        raise WriteError(f"cannot write the project to {target}: {reason} ({where})") from None
    return report


def user_path(path: Path) -> Path:
    """PATH with a leading ~ or ~user expanded; an unknown user is a TargetError."""
    try:
        return path.expanduser()
    except RuntimeError as e:  # ~nosuchuser
        raise TargetError(f"{path}: {e}") from None


def write_one(path: Path, text: str) -> Path | None:
    """Write one file atomically; a different file already there keeps its content under a
    free FILE.orig name, which is returned. OS errors become a WriteError."""
    path = user_path(path).resolve()  # an existing symlink is followed, as `>` does
    try:
        if path.is_file() and path.read_bytes() == text.encode("utf-8"):
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
        return apply_changes(path.parent, {path.name: text}, backup=True).get(path.name)
    except OSError as e:
        raise WriteError(f"cannot write {path}: {e.strerror or e}") from None
