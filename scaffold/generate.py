"""The pipeline, in one direction: spec -> context -> render -> format -> write."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from scaffold import __version__
from scaffold.context import build_context
from scaffold.formatting import format_files
from scaffold.render import render_project, render_snippet, toml_literal
from scaffold.spec import ProjectSpec, snippet_spec
from scaffold.write import WriteReport, write_project

STATE_FILE = ".dlgen.toml"
BASE_FILE = ".dlgen/base.json"


def project_state(spec: ProjectSpec, files: dict[str, str]) -> dict[str, str]:
    """.dlgen.toml (answers, version, hashes) and the pristine files, the base of a later merge."""
    lines = [
        "# Written by dlgen. `dlgen update` re-renders the project from these answers and",
        f"# merges the result three ways, with {BASE_FILE} (the files as generated) as the base.",
        f"dlgen_version = {toml_literal(__version__)}",
        f"name = {toml_literal(spec.name)}",
        f"package = {toml_literal(spec.package)}",
        "",
        "[options]",
        *(f"{k.replace('_', '-')} = {toml_literal(v)}" for k, v in spec.answers().items()),
        "",
        "[files]  # sha256 of each file as generated",
        *(
            f'"{rel}" = "{hashlib.sha256(t.encode()).hexdigest()}"'
            for rel, t in sorted(files.items())
        ),
    ]
    base = json.dumps(files, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    return {STATE_FILE: "\n".join(lines) + "\n", BASE_FILE: base}


def render_files(spec: ProjectSpec) -> dict[str, str]:
    """The project's own files, formatted; no disk writes."""
    return format_files(render_project(spec, build_context(spec)))


def render(spec: ProjectSpec) -> dict[str, str]:
    """All files of the project plus the dlgen state files; no disk writes."""
    files = render_files(spec)
    return {**files, **project_state(spec, files)}


def generate(spec: ProjectSpec, target: Path, force: bool = False) -> WriteReport:
    return write_project(target, render(spec), force=force)


def snippet(name: str, teach: bool = False, lang: str = "en") -> str:
    """The standalone file of one cheat-sheet section, from the templates projects use."""
    _, spec = snippet_spec(name, teach=teach, lang=lang)
    path = f"{name}.py"
    return format_files({path: render_snippet(name, build_context(spec))})[path]
