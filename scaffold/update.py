"""`dlgen update`: re-render a project from its .dlgen.toml and merge three ways into it.

It sits beside the generation pipeline and reuses it: spec -> render -> format gives the
new files; the files as last generated (.dlgen/base.json) are the merge base; the files on
disk are yours. Your edits are kept, the template's changes applied, and where both
changed the same lines the file gets conflict markers. Nothing you wrote is ever dropped.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from scaffold.errors import TargetError, WriteError
from scaffold.generate import BASE_FILE, STATE_FILE, project_state, render_files
from scaffold.merge import merge3
from scaffold.spec import OPTION_BY_NAME, ProjectSpec, build_spec
from scaffold.write import write_file


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


def read_state(root: Path) -> tuple[str, dict[str, str | bool], dict[str, str]]:
    """The project's name, its recorded answers and the files as last generated."""
    state, base = root / STATE_FILE, root / BASE_FILE
    if not state.is_file():
        raise TargetError(f"{root} is not a dlgen project: it has no {STATE_FILE}")
    try:
        data = tomllib.loads(state.read_text(encoding="utf-8"))
        name = data["name"]
        answers = {k.replace("-", "_"): v for k, v in data["options"].items()}
    except (tomllib.TOMLDecodeError, KeyError, AttributeError) as e:
        raise TargetError(f"{state} is damaged ({e}); restore it from version control") from None
    try:
        files = json.loads(base.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TargetError(f"{base} is missing: it is the base of the merge") from None
    except ValueError as e:
        raise TargetError(f"{base} is damaged ({e}); restore it from version control") from None
    if not isinstance(files, dict) or not all(
        isinstance(rel, str)
        and isinstance(text, str)
        and not Path(rel).is_absolute()
        and ".." not in Path(rel).parts
        for rel, text in files.items()
    ):
        # Never follow a path out of the project, whatever the file says.
        raise TargetError(f"{base} is damaged (a path or text is not valid); restore it")
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
        try:
            yours = (root / rel).read_text(encoding="utf-8") if (root / rel).is_file() else None
        except UnicodeDecodeError:  # not text any more: yours, untouched
            report.kept.append(rel)
            continue
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
        if not (root / rel).is_file() or (root / rel).read_text(encoding="utf-8") != text:
            report.writes[rel] = text
    return report


def apply_update(root: Path, report: UpdateReport) -> None:
    """Write the planned files one by one, each atomically; the state files last."""
    order = sorted(report.writes, key=lambda rel: rel in (STATE_FILE, BASE_FILE))
    try:
        for rel in order:
            text = report.writes[rel]
            if text is None:
                (root / rel).unlink(missing_ok=True)
                _remove_empty_parents(root / rel, root)
            else:
                write_file(root / rel, text)
    except OSError as e:
        raise WriteError(f"cannot update {root}: {e.strerror or e} ({e.filename or rel})") from None


def _remove_empty_parents(path: Path, root: Path) -> None:
    """Remove the folders a removed file leaves empty (scripts/ after --no-ddp), up to root."""
    for folder in path.parents:
        if folder == root or not folder.is_relative_to(root) or any(folder.iterdir()):
            return
        folder.rmdir()
