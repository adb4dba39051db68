"""`dlgen update`: re-render a project from its .dlgen.toml and merge three ways into it.

It sits beside the generation pipeline and reuses it: spec -> render -> format gives the
new files; the files as last generated (.dlgen/base.json) are the merge base; the files on
disk are yours. Your edits are kept, the template's changes applied, and where both
changed the same lines the file gets conflict markers. Nothing you wrote is ever dropped.
"""

from __future__ import annotations

import difflib
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from scaffold.errors import TargetError, WriteError
from scaffold.generate import BASE_FILE, STATE_FILE, project_state, render_files
from scaffold.merge import merge3
from scaffold.spec import OPTION_BY_NAME, ProjectSpec, build_spec
from scaffold.write import apply_changes, inside


@dataclass
class UpdateReport:
    spec: ProjectSpec
    updated: list[str] = field(default_factory=list)  # you had not changed it: new version
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)  # no longer generated, unchanged by you
    merged: list[str] = field(default_factory=list)  # both changed it, cleanly merged
    conflicts: list[str] = field(default_factory=list)  # both changed the same lines
    kept: list[str] = field(default_factory=list)  # yours kept: no longer generated, or deleted
    writes: dict[str, str | None] = field(default_factory=dict)  # path -> text, None: delete

    @property
    def changed(self) -> bool:
        return bool(self.writes)


def _read_text(path: Path, what: str) -> str:
    """A state file's text, or a TargetError that says what is wrong with it."""
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise TargetError(f"{path} is damaged (not UTF-8 text); restore it") from None
    except IsADirectoryError:
        raise TargetError(f"{path} is a folder, not {what}; restore it") from None
    except FileNotFoundError:
        raise TargetError(f"{path} is missing: it is {what}") from None
    except OSError as e:
        raise TargetError(f"cannot read {path}: {e.strerror or e}") from None


def _check_answers(state: Path, answers: object) -> dict[str, str | bool]:
    """The recorded answers, each of the type its option takes: `ema = "false"` is no flag."""
    if not isinstance(answers, dict):
        raise TargetError(f"{state} is damaged ([options] is not a table); restore it")
    checked = {}
    for key, value in answers.items():
        name = key.replace("-", "_")
        option = OPTION_BY_NAME.get(name)
        if option is None:
            continue  # an option this dlgen does not know: not ours to judge
        if option.is_flag and not isinstance(value, bool):
            raise TargetError(
                f"{state} is damaged: {key} must be true or false, not {value!r}; fix or restore it"
            )
        if not option.is_flag and not isinstance(value, str):
            raise TargetError(
                f"{state} is damaged: {key} must be a string such as {option.default!r}, "
                f"not {value!r}; fix or restore it"
            )
        checked[name] = value
    return checked


def read_state(root: Path) -> tuple[str, dict[str, str | bool], dict[str, str]]:
    """The project's name, its recorded answers and the files as last generated."""
    state, base = inside(root, STATE_FILE), inside(root, BASE_FILE)
    if not state.exists():
        raise TargetError(f"{root} is not a dlgen project: it has no {STATE_FILE}")
    text = _read_text(state, "the record of the project's answers")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise TargetError(f"{state} is damaged ({e}); restore it from version control") from None
    name = data.get("name")
    if not isinstance(name, str):
        raise TargetError(f"{state} is damaged (name is not a string); restore it")
    answers = _check_answers(state, data.get("options"))
    try:
        files = json.loads(_read_text(base, "the base of the merge"))
    except ValueError as e:
        raise TargetError(f"{base} is damaged ({e}); restore it from version control") from None
    if not isinstance(files, dict) or not all(
        isinstance(rel, str)
        and isinstance(text, str)
        and rel
        and not Path(rel).is_absolute()
        and ".." not in Path(rel).parts
        and "\x00" not in rel
        and rel not in (STATE_FILE, BASE_FILE)
        for rel, text in files.items()
    ):
        # Never follow a path out of the project, whatever the file says.
        raise TargetError(f"{base} is damaged (a path or text is not valid); restore it")
    for rel in files:  # nor through a symlink
        inside(root, rel)
    return name, answers, files


def updated_spec(name: str, answers: dict, changes: dict) -> ProjectSpec:
    """The recorded answers with the given changes; a new model drops answers it has no use for."""
    model = changes.get("model") or answers.get("model", "mlp")
    kept = {
        k: v
        for k, v in answers.items()
        if k in OPTION_BY_NAME
        and (not OPTION_BY_NAME[k].models or model in OPTION_BY_NAME[k].models)
    }
    return build_spec(name, **{**kept, **{k: v for k, v in changes.items() if v is not None}})


def plan_update(root: Path, **changes: str | bool | None) -> UpdateReport:
    """Work out every file's new text; write nothing."""
    name, answers, base = read_state(root)
    spec = updated_spec(name, answers, changes)
    new = render_files(spec)
    report = UpdateReport(spec)
    for rel in sorted(base.keys() | new.keys()):
        old, theirs = base.get(rel), new.get(rel)
        path = inside(root, rel)  # through no symlink out of the project
        try:
            yours = path.read_bytes().decode("utf-8") if path.is_file() else None
        except UnicodeDecodeError:  # not text any more: yours, untouched
            report.kept.append(rel)
            continue
        except OSError as e:
            raise TargetError(f"cannot read {path}: {e.strerror or e}") from None
        if path.is_dir() and theirs is not None and theirs != old:
            raise TargetError(f"cannot update {path}: a folder of that name is in the way")
        if theirs == old or yours == theirs:
            continue  # the template did not change it, or you already have the new version
        if yours == old:  # untouched by you (or absent from both)
            report.writes[rel] = theirs
            if theirs is None:
                report.removed.append(rel)
            else:
                (report.added if old is None else report.updated).append(rel)
        elif yours is None or theirs is None:
            report.kept.append(rel)  # you deleted what changed, or edited what was dropped
        else:
            text, conflicts = merge3(old or "", yours, theirs)
            report.writes[rel] = text
            (report.conflicts if conflicts else report.merged).append(rel)
    state = project_state(spec, new)
    for rel, text in state.items():
        path = root / rel
        if not path.is_file() or path.read_bytes() != text.encode("utf-8"):
            report.writes[rel] = text
    return report


def _lines(text: str) -> list[str]:
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):  # as git marks it
        lines[-1] += "\n\\ No newline at end of file\n"
    return lines


def update_diff(root: Path, report: UpdateReport) -> str:
    """The change the update would make, as a unified diff in git's format: what `git diff`
    shows after it. A conflict appears as the <<<<<<< / >>>>>>> lines the file would get.
    .dlgen/base.json, the files as generated, is left out: it repeats the whole project."""
    out: list[str] = []
    for rel, new in sorted(report.writes.items()):
        if rel == BASE_FILE:
            continue
        path = root / rel
        old = path.read_bytes().decode("utf-8") if path.is_file() else None
        out.append(f"diff --git a/{rel} b/{rel}\n")
        if old is None or new is None:
            mode = "100755" if (new or old or "").startswith("#!") else "100644"
            out.append(f"{'new' if old is None else 'deleted'} file mode {mode}\n")
        out += difflib.unified_diff(
            _lines(old or ""),
            _lines(new or ""),
            "/dev/null" if old is None else f"a/{rel}",
            "/dev/null" if new is None else f"b/{rel}",
        )
    return "".join(out)


def apply_update(root: Path, report: UpdateReport) -> None:
    """Write and delete the planned files: all of them, or, on any failure, none."""
    try:
        apply_changes(root, report.writes)
    except OSError as e:
        where = e.filename or root
        raise WriteError(
            f"cannot update {root}: {e.strerror or e} ({where}); nothing was changed"
        ) from None
    for rel, text in report.writes.items():
        if text is None:
            _remove_empty_parents(root / rel, root)


def _remove_empty_parents(path: Path, root: Path) -> None:
    """Remove the folders a removed file leaves empty (scripts/ after --no-ddp), up to root."""
    for folder in path.parents:
        if not folder.is_dir():
            continue  # already removed with an earlier file
        if folder == root or not folder.is_relative_to(root) or any(folder.iterdir()):
            return
        folder.rmdir()
