"""The Jinja environment, comment texts, and rendering of the project tree into memory."""

from __future__ import annotations

import json
import re
import textwrap
import tomllib
import unicodedata
from functools import cache
from pathlib import Path

import jinja2

from scaffold.formatting import LINE_LENGTH
from scaffold.spec import ProjectSpec, generated_files_claimed


def templates_dir() -> Path:
    """templates/ ships inside the wheel as scaffold/templates; in a checkout it sits beside it."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "templates", here.parent / "templates"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("dlgen's templates/ folder is missing from this installation")


def py_literal(value: object) -> str:
    """A Python literal for a plain value: user data reaches code only through this filter."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a valid, double-quoted Python literal
    if isinstance(value, (bool, int, float)) or value is None:
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(py_literal(v) for v in value) + "]"
    raise TypeError(f"no Python literal for {type(value).__name__}")


def toml_literal(value: object) -> str:
    """A TOML literal for a plain value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_literal(v) for v in value) + "]"
    raise TypeError(f"no TOML literal for {type(value).__name__}")


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["py"] = py_literal
    env.filters["toml"] = toml_literal
    env.globals["t"] = say
    return env


@jinja2.pass_context
def say(context: jinja2.runtime.Context, key: str, indent: int | None = None) -> str:
    """`{{ t("id") }}`: the text of that id in the chosen language, as a Python string
    literal; printed messages are localized like comments, and the code stays the same.
    `msg = {{ t("id", indent=8) }}` on a line of its own, indented by 8: a text too long
    for that line becomes black's parenthesized run of literals, one per line."""
    texts = comment_texts(context["lang"])
    if key not in texts:
        raise KeyError(f"no text {key!r} in comments/{context['lang']}.toml")
    #: a separator's own spaces (" and ", "; ") are part of the text
    text = texts[key]["brief"].strip("\n")
    literal = _text_literal(text)
    if indent is None or indent + len("msg = ") + _width(literal) <= LINE_LENGTH:
        return literal
    inner = " " * (indent + 4)
    parts = [_text_literal(part) for part in split_text(text, LINE_LENGTH - len(inner) - 2)]
    return "(\n" + "".join(inner + part + "\n" for part in parts) + " " * indent + ")"


def _text_literal(text: str) -> str:
    """Quoted as black quotes it: in single quotes when that saves escaping a double one."""
    literal = py_literal(text)
    if '"' in text and "'" not in text:
        return "'" + literal[1:-1].replace('\\"', '"') + "'"
    return literal


# The pieces a long message is split into: a Latin run with its trailing spaces, or one
# other character (with the spaces after it).
_PIECE = re.compile(r"[\x21-\x7e]+ *|[^\x21-\x7e] *")


def split_text(text: str, width: int) -> list[str]:
    """Cut a message into parts of at most `width` columns, between words (a Chinese one
    after its punctuation where it can); joined, the parts are the text again."""
    parts = [""]
    for piece in _PIECE.findall(text):
        if parts[-1] and _width(json.dumps(parts[-1] + piece, ensure_ascii=False)) > width + 2:
            line = parts[-1]
            cut = max(line.rfind(ch) for ch in "，；：。、）")
            if cut >= len(line) // 2 and cut < len(line) - 1:
                parts[-1:] = [line[: cut + 1], line[cut + 1 :]]
            else:
                parts.append("")
        parts[-1] += piece
    return parts


@cache
def comment_texts(lang: str) -> dict[str, dict[str, str]]:
    with open(templates_dir() / "comments" / f"{lang}.toml", "rb") as f:
        return tomllib.load(f)


# A line holding only `#: id` (a comment) or `"""#: id"""` (a docstring) is replaced by the
# text of that id in the chosen language: its "brief" always, its "teach" part with --teach.
MARKER = re.compile(r'^(?P<indent>[ ]*)(?P<doc>""")?#: (?P<id>[a-z0-9_]+)(?P=doc)?$')
# `code  #: id` becomes `code  # <brief>`: a short trailing comment, brief text only.
TRAILING = re.compile(r"^(?P<code>[ ]*\S.*?)  #: (?P<id>[a-z0-9_]+)$")


# Chinese text breaks only after this punctuation, or next to a Latin token.
CJK_BREAK_AFTER = set("，。；：、！？）」』")
# Closing punctuation stays at the end of a line, never starts the next one.
NO_LINE_START = set("，。；：、）」』！？,.;:)")
# The units a CJK line is filled with, none of which is ever split: a quoted or
# backticked span, a Latin token (with its trailing space), or a run of other characters
# that ends after break punctuation or before the next Latin token.
_UNIT = re.compile(
    r"`[^`]*` ?|“[^”]*”|「[^」]*」|\"[^\"]*\" ?|(?<![A-Za-z])'[^']*'(?![A-Za-z]) ?"
    r"|[A-Za-z0-9_.,:;()\[\]'`/=<>+\-*@%~#!?\"|^{}\\]+ ?"
    r"|[^A-Za-z0-9_`'\" ]*?[，。；：、！？）」』](?=.)|[^A-Za-z0-9_`'\" ]+|."
)


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def wrap(text: str, width: int) -> list[str]:
    """Wrap at spaces. Text with CJK characters also breaks after Chinese punctuation and
    next to a Latin token, never inside a word, a quote or a backticked span."""
    lines: list[str] = []
    for paragraph in text.strip().split("\n"):
        if _width(paragraph) == len(paragraph):
            lines += textwrap.wrap(
                paragraph, width, break_long_words=False, break_on_hyphens=False
            ) or [""]
            continue
        line = ""
        for unit in _UNIT.findall(paragraph):
            if line and _width(line + unit.rstrip()) > width and unit[0] not in NO_LINE_START:
                lines.append(line.rstrip())
                line = unit.lstrip()
            else:
                line += unit
        lines.append(line.rstrip())
    return lines


def expand_comments(
    source: str, lang: str, teach: bool, pkg: str, where: str, paragraphs: bool = False
) -> str:
    """Replace each `#: id` marker by its text; with paragraphs, an empty `#` line (or an
    empty docstring line) separates the parts, so a notebook can make prose of them."""
    texts = comment_texts(lang)
    out: list[str] = []
    for line in source.split("\n"):
        m = MARKER.match(line) or TRAILING.match(line)
        if not m:
            out.append(line)
            continue
        key = m["id"]
        if key not in texts:
            raise KeyError(f"{where}: no comment text {key!r} in comments/{lang}.toml")
        entry = texts[key]
        if "code" in m.groupdict():
            out.append(f"{m['code']}  # {entry['brief'].strip()}")
            continue
        parts = [entry.get("brief", "")]
        if teach:
            parts += [entry.get("teach", ""), entry.get("link", "")]
        text = "\n".join(p.strip() for p in parts if p.strip()).replace("{pkg}", pkg)
        if not text:
            continue
        indent = m["indent"]
        if paragraphs:
            text = text.replace("\n", "\n\n")
        if m["doc"]:
            body = wrap(text, LINE_LENGTH - len(indent) - 6)
            if len(body) == 1:
                out.append(f'{indent}"""{body[0]}"""')
            else:
                out.append(f'{indent}"""{body[0]}')
                out += [f"{indent}{b}" if b else "" for b in body[1:]]
                out.append(f'{indent}"""')
        else:
            out += [f"{indent}# {b}".rstrip() for b in wrap(text, LINE_LENGTH - len(indent) - 2)]
    return "\n".join(out)


def tidy(source: str) -> str:
    """Strip trailing spaces, collapse runs of blank lines to two, end with one newline."""
    lines = [line.rstrip() for line in source.split("\n")]
    out: list[str] = []
    blanks = 0
    for line in lines:
        blanks = blanks + 1 if not line else 0
        if blanks <= 2:
            out.append(line)
    return "\n".join(out).strip("\n") + "\n"


def project_templates(spec: ProjectSpec) -> list[tuple[str, str]]:
    """(template name, output path) of every file the spec asks for, in a stable order."""
    root = templates_dir() / "project"
    claimed = generated_files_claimed()
    pairs = []
    for path in sorted(root.rglob("*.j2")):
        rel = path.relative_to(root).as_posix()
        out = rel.removesuffix(".j2").replace("__pkg__", "{pkg}")
        if out.startswith("notebooks/"):  # a script template, rendered as a notebook
            out = out.removesuffix(".py") + ".ipynb"
        if out in claimed and not any(getattr(spec, o) == v for o, v in claimed[out]):
            continue
        pairs.append((f"project/{rel}", out.format(pkg=spec.package)))
    return pairs


# Course markers in a template: `#! exercise ID` ... `#! end` around the lines a student
# writes, `#! check ID` ... `#! end` around the check that follows. A script or a project
# keeps the exercise's lines and drops the markers and the check; scaffold/notebook.py
# cuts them into exercises, checks and solutions.
COURSE_MARKER = re.compile(r"^[ ]*#! (exercise|check) [a-z0-9_]+$|^[ ]*#! end$")


def strip_course_markers(source: str) -> str:
    out: list[str] = []
    in_check = False
    for line in source.split("\n"):
        m = COURSE_MARKER.match(line)
        if m:
            in_check = m[1] == "check"
        elif not in_check:
            out.append(line)
    return "\n".join(out)


CJK_PUNCTUATION = set("，。；：、！？（）“”「」")


def unwrap_chinese(markdown: str) -> str:
    """Markdown with each Chinese paragraph (or list item) on one line: a renderer turns a
    line break into a space, which Chinese text does not have between its characters."""
    out: list[str] = []
    fenced = False
    for line in markdown.split("\n"):
        text = line.strip()
        prev = out[-1].strip() if out else ""
        if text.startswith("```"):
            fenced = not fenced
        elif (
            not fenced
            and text
            and prev
            and not text.startswith(("- ", "#", "|", "```"))
            and not prev.startswith(("#", "|", "```"))
            and _width(prev) != len(prev)  # a Chinese line
        ):
            cjk = _width(prev[-1]) == 2 and _width(text[0]) == 2
            punctuation = prev[-1] in CJK_PUNCTUATION or text[0] in CJK_PUNCTUATION
            glue = "" if cjk or punctuation else " "
            out[-1] = out[-1].rstrip() + glue + text
            continue
        out.append(line)
    return "\n".join(out)


def render_template(name: str, context: dict, notebook: bool = False) -> str:
    """The rendered file; for a notebook, with course markers and paragraph breaks kept."""
    text = environment().get_template(name).render(context)
    if name.endswith(".py.j2"):
        text = expand_comments(
            text, context["lang"], context["teach"], context["pkg"], name, paragraphs=notebook
        )
        if not notebook:
            text = strip_course_markers(text)
    elif name.endswith(".md.j2") and context["lang"] == "zh":
        text = unwrap_chinese(text)
    return tidy(text)


def render_snippet(name: str, context: dict, notebook: bool = False) -> str:
    """A standalone snippet file: templates/standalone/<name>.py.j2."""
    return render_template(f"standalone/{name}.py.j2", context, notebook=notebook)


def render_project(spec: ProjectSpec, context: dict) -> dict[str, str]:
    """Render the whole project into {relative path: text}; nothing touches the disk."""
    files = {}
    for name, out in project_templates(spec):
        if out.endswith(".ipynb"):
            from scaffold.notebook import from_script  # lazy: imports nbformat and black

            files[out] = from_script(render_template(name, context, notebook=True), spec.lang)
            continue
        text = render_template(name, context)
        if text.strip():
            files[out] = text
    return files
