"""The pipeline, in one direction: spec -> context -> render -> format -> write."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from scaffold import __version__
from scaffold.context import build_context
from scaffold.formatting import format_files
from scaffold.render import comment_texts, render_project, render_snippet, toml_literal
from scaffold.spec import OPTION_BY_NAME, ProjectSpec, _check_choice, course_sections, snippet_spec
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


def snippet_source(name: str, lang: str = "en", teach: bool = True) -> str:
    """The snippet as rendered for a notebook: course markers and paragraph breaks kept."""
    _, spec = snippet_spec(name, teach=teach, lang=lang)
    return render_snippet(name, build_context(spec), notebook=True)


def snippet_notebook(name: str, teach: bool = False, lang: str = "en", mode: str = "full") -> str:
    """One cheat-sheet section as a notebook (JSON text): `full`, `exercise` or `solution`."""
    from scaffold.notebook import from_script  # lazy: imports nbformat

    return from_script(snippet_source(name, lang, teach), lang, mode)


def course(lang: str = "en", sections: str | None = None) -> dict[str, str]:
    """{path: text} of a course: README.md, one notebook per section in teaching order,
    exercises/ (the key lines removed, each followed by its check) and solutions/."""
    _check_choice(OPTION_BY_NAME["lang"], lang)
    chosen = course_sections(sections)
    texts = comment_texts(lang)

    def say(key: str) -> str:
        return texts[key]["brief"].strip()

    files = {}
    rows = []
    for number, name in chosen:
        stem = f"{number:02d}-{name}.ipynb"
        files[stem] = snippet_notebook(name, teach=True, lang=lang)
        files[f"exercises/{stem}"] = snippet_notebook(name, True, lang, mode="exercise")
        files[f"solutions/{stem}"] = snippet_notebook(name, True, lang, mode="solution")
        doc = say("snippet_" + name.replace("-", "_"))
        rows.append(
            f"| {number:02d} | [{name}]({stem}) | {doc} | [exercises/{stem}](exercises/{stem}) |"
        )
    readme = [
        f"# {say('course_title')}",
        "",
        say("course_intro"),
        "",
        "```bash",
        "pip install torch jupyterlab",
        "jupyter lab",
        "```",
        "",
        f"| # | {say('course_section')} | {say('course_content')} | {say('course_exercise')} |",
        "|---|---|---|---|",
        *rows,
        "",
        say("course_exercises"),
        "",
    ]
    files["README.md"] = "\n".join(readme)
    return files
