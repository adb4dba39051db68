"""Formatting. The templates render black-stable code: the test suite proves it for every
option combination. So black, about 0.35 s to import, runs only on a file where a
user-supplied value such as a long project name pushed a line past black's limit."""

from __future__ import annotations

import unicodedata

LINE_LENGTH = 88


def width(line: str) -> int:
    """Columns on screen, as black counts them: a Chinese character takes two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in line)


def needs_black(text: str) -> bool:
    """A line of code past the limit; black leaves long comments (URLs) as they are."""
    return any(
        width(line) > LINE_LENGTH and not line.lstrip().startswith("#")
        for line in text.splitlines()
    )


def format_files(files: dict[str, str]) -> dict[str, str]:
    out = dict(files)
    for rel, text in files.items():
        if rel.endswith(".py") and needs_black(text):
            import black  # lazy: costs about 0.35 s

            out[rel] = black.format_str(text, mode=black.Mode(line_length=LINE_LENGTH))
    return out
