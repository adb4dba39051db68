"""docs/options.md, generated from the option spec: python -m scaffold.docs"""

from __future__ import annotations

import sys
from pathlib import Path

from scaffold.spec import CONFIG_FIELDS, OPTIONS, RULES, SNIPPETS

DOC = Path(__file__).resolve().parents[1] / "docs" / "options.md"


def options_markdown() -> str:
    lines = [
        "# Options",
        "",
        "Generated from `scaffold/spec.py` by `python -m scaffold.docs`; a test keeps it current.",
        "",
        "## dlgen new",
        "",
        "| option | values (* = default) | what it does |",
        "|---|---|---|",
    ]
    for o in OPTIONS:
        if o.is_flag:
            values = "flag"
        else:
            values = ", ".join(f"{v}*" if v == o.default else v for v in o.values)
        scope = f" Only with --model {' or '.join(o.models)}." if o.models else ""
        lines.append(f"| `{o.flag}` | {values} | {o.help}{scope} |")
    lines += ["", "Refused combinations:", ""]
    lines += [f"- {r.message}" for r in RULES]
    lines += [
        "",
        "## Config fields each option adds to the generated project",
        "",
        "| added by | field | type | default | meaning |",
        "|---|---|---|---|---|",
    ]
    for key, fields in CONFIG_FIELDS.items():
        where = "every project" if key == "base" else f"`{key[0]}={key[1]}`"
        for f in fields:
            lines.append(f"| {where} | `{f.name}` | {f.type} | `{f.default!r}` | {f.help} |")
    lines += ["", "## dlgen snippet", "", "| name | what it shows |", "|---|---|"]
    lines += [f"| `{s.name}` | {s.help} |" for s in SNIPPETS]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    DOC.write_text(options_markdown(), encoding="utf-8")
    sys.stdout.write(f"wrote {DOC}\n")
