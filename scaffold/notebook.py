"""Notebooks from the same templates as the scripts: `dlgen snippet --notebook`, the course
(exercises and solutions) and a --teach project's walkthrough.

A snippet rendered for a notebook keeps its course markers (see scaffold/render.py) and
an empty `#` line between the paragraphs of a comment. Here `main()` is unrolled to the
top level, each column-0 comment becomes a markdown cell, each definition a code cell,
each `#! check` block a check cell; for an exercise, each `#! exercise` block becomes its
instruction and a `...` for the student to replace.
"""

from __future__ import annotations

import ast
import re
import textwrap
import unicodedata
from typing import Literal

from scaffold.render import comment_texts, wrap

Mode = Literal["full", "exercise", "solution"]
MARKER = re.compile(r"^(?P<indent>[ ]*)#! (?:(?P<kind>exercise|check) (?P<id>[a-z0-9_]+)|end)$")
CODE_WIDTH = 88


def _text(lang: str, key: str) -> str:
    return comment_texts(lang)[key]["brief"].strip()


def placeholder(block: list[str], indent: str, lang: str) -> list[str]:
    """What a student finds instead of the block: `name = ...` for each name it assigns,
    `return ...` if it returns, else `...`; each marked as theirs to write."""
    tree = ast.parse(textwrap.dedent("\n".join(block)))
    nodes = list(ast.walk(tree))
    mine = f"  # {_text(lang, 'nb_your_code')}"
    if any(isinstance(n, ast.Return) for n in nodes):
        return [f"{indent}return ...{mine}"]
    names: list[str] = []
    for n in nodes:
        targets = n.targets if isinstance(n, ast.Assign) else [getattr(n, "target", None)]
        if isinstance(n, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            names += [t.id for t in targets if isinstance(t, ast.Name) and t.id not in names]
    return [f"{indent}{name} = ...{mine}" for name in names] or [f"{indent}...{mine}"]


def cut(source: str, mode: Mode, lang: str) -> str:
    """Apply the course markers: keep or replace each exercise, keep or drop each check."""
    out: list[str] = []
    lines = iter(source.split("\n"))
    for line in lines:
        m = MARKER.match(line)
        if not m:
            out.append(line)
            continue
        block = []
        for inner in lines:
            if MARKER.match(inner):
                break
            block.append(inner)
        if m["kind"] == "check":
            if mode != "full":
                out += [line, *block, f"{m['indent']}#! end"]
        elif mode == "exercise":
            indent = m["indent"]
            task = wrap(_text(lang, f"exercise_{m['id']}"), CODE_WIDTH - len(indent) - 2)
            out += [f"{indent}# {t}" for t in task] + placeholder(block, indent, lang)
        else:
            out += block
    return "\n".join(out)


def keep_imports_for_the_student(source: str) -> str:
    """An import that only the removed lines used stays, for the student, marked noqa."""
    tree = ast.parse(source)
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    lines = source.split("\n")
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)) and node.lineno == node.end_lineno:
            names = [(a.asname or a.name).split(".")[0] for a in node.names]
            if not any(name in used for name in names):
                lines[node.lineno - 1] += "  # noqa: F401"
    return "\n".join(lines)


def unroll_main(source: str) -> str:
    """main()'s body at the top level, and no `if __name__ == "__main__":` guard."""
    out: list[str] = []
    lines = source.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("def main(") or line.startswith("if __name__ =="):
            body = []
            i += 1
            while i < len(lines) and (not lines[i] or lines[i].startswith(" ")):
                body.append(lines[i])
                i += 1
            if line.startswith("def main("):
                out += textwrap.dedent("\n".join(body)).split("\n")
            continue
        out.append(line)
        i += 1
    return "\n".join(out)


def _cjk(ch: str) -> bool:
    return unicodedata.east_asian_width(ch) in "WF"


def prose(lines: list[str]) -> str:
    """Comment lines (or docstring lines) as markdown: wrapped lines are joined again, with
    no space between two Chinese characters or after an opening Chinese bracket; an empty
    line separates paragraphs."""
    paragraphs: list[str] = []
    current = ""
    for line in lines:
        text = line.strip()
        if text.startswith("#"):
            text = text[1:].strip()
        if not text:
            if current:
                paragraphs.append(current)
            current = ""
        elif current and (_cjk(current[-1]) and _cjk(text[0]) or current[-1] in "（「『“"):
            current += text
        else:
            current = f"{current} {text}".strip()
    if current:
        paragraphs.append(current)
    return "\n\n".join(paragraphs)


def cells(source: str, mode: Mode, lang: str) -> list[tuple[str, str]]:
    """[(cell type, text)] of a rendered script with course markers."""
    import black  # lazy: only notebooks need it

    source = cut(source, mode, lang)
    if mode == "exercise":
        source = keep_imports_for_the_student(source)
    flat = unroll_main(source).split("\n")
    tree = ast.parse("\n".join(flat))
    starts = {}
    for node in tree.body:
        first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        starts[first - 1] = node
    out: list[tuple[str, str]] = []
    code: list[str] = []  # the code cell being filled
    comment: list[str] = []
    check = False

    def flush() -> None:
        text = "\n".join(code).strip("\n")
        if text:
            text = black.format_str(text, mode=black.Mode(line_length=CODE_WIDTH)).strip("\n")
            out.append(("check" if check else "code", text))
        code.clear()

    def flush_comment() -> None:
        if comment:
            out.append(("markdown", prose(comment)))
        comment.clear()

    i = 0
    while i < len(flat):
        line = flat[i]
        m = MARKER.match(line)
        if m:
            flush()
            flush_comment()
            check = m["kind"] == "check"
            if check:
                out.append(
                    (
                        "markdown",
                        _text(lang, "nb_check" if mode == "exercise" else "nb_solution_check"),
                    )
                )
            i += 1
        elif i in starts:
            node = starts[i]
            end = node.end_lineno
            block = flat[i:end]
            flush_comment()
            if isinstance(node, ast.Expr) and i == 0 and isinstance(node.value, ast.Constant):
                text = prose(ast.literal_eval("\n".join(block)).split("\n"))
                out.append(("markdown", "# " + text))
            elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                flush()
                code.extend(block)
                flush()
            elif isinstance(node, (ast.Import, ast.ImportFrom)) and not check:
                if code and not code_is_imports(code):
                    flush()
                code.extend(block)
            else:
                if code and code_is_imports(code) and not check:
                    flush()
                code.extend(block)
            i = end
        elif line.startswith("#"):
            flush()
            comment.append(line)
            i += 1
        else:  # a blank line, or an indented comment after the last statement of a block
            if line.strip() and code:
                code.append(line)
            elif not line.strip() and comment:
                flush_comment()
            elif code:
                code.append(line)
            i += 1
    flush()
    flush_comment()
    return out


def code_is_imports(code: list[str]) -> bool:
    first = next((line for line in code if line.strip()), "")
    return first.startswith(("import ", "from "))


def build(cell_list: list[tuple[str, str]]) -> str:
    """The notebook as JSON text (nbformat 4), with stable cell ids."""
    import nbformat  # lazy: only notebooks need it

    nb = nbformat.v4.new_notebook()
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    for n, (kind, text) in enumerate(cell_list):
        if kind == "markdown":
            cell = nbformat.v4.new_markdown_cell(text)
        else:
            cell = nbformat.v4.new_code_cell(text)
            if kind == "check":
                cell.metadata["tags"] = ["check"]
        cell.id = f"cell-{n}"
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nbformat.writes(nb) + "\n"


def from_script(source: str, lang: str, mode: Mode = "full", title: str | None = None) -> str:
    cell_list = cells(source, mode, lang)
    if title and cell_list and cell_list[0][0] == "markdown":
        cell_list[0] = ("markdown", f"# {title}\n\n" + cell_list[0][1].removeprefix("# "))
    return build(cell_list)
