"""A line-based three-way merge (diff3): apply both sides' changes to a common base.

Between two lines that neither side touched (sync points), a stretch of the base changed
by one side takes that side's version; changed identically by both, it takes either; changed
differently by both, it becomes a conflict, shown with git's markers.
"""

from __future__ import annotations

from difflib import SequenceMatcher

YOURS = "<<<<<<< yours\n"
SEPARATOR = "=======\n"
THEIRS = ">>>>>>> dlgen\n"


def _matches(base: list[str], other: list[str]) -> dict[int, int]:
    """Base line index -> index of the same, unchanged line in other."""
    matcher = SequenceMatcher(None, base, other, autojunk=False)
    return {
        block.a + k: block.b + k
        for block in matcher.get_matching_blocks()
        for k in range(block.size)
    }


def _ended(lines: list[str]) -> list[str]:
    """A last line without a newline gets one inside a conflict, so markers stay on their own line."""
    return lines[:-1] + [lines[-1] + "\n"] if lines and not lines[-1].endswith("\n") else lines


def merge3(base: str, yours: str, theirs: str) -> tuple[str, int]:
    """Merge theirs' changes to base into yours; return (text, number of conflicts)."""
    b, y, t = (s.splitlines(keepends=True) for s in (base, yours, theirs))
    in_yours, in_theirs = _matches(b, y), _matches(b, t)
    sync = [i for i in range(len(b)) if i in in_yours and i in in_theirs]
    out: list[str] = []
    conflicts = 0
    bi = yi = ti = 0
    for i in [*sync, None]:
        if i is None:
            be, ye, te = len(b), len(y), len(t)
        else:
            be, ye, te = i, in_yours[i], in_theirs[i]
        old, mine, new = b[bi:be], y[yi:ye], t[ti:te]
        if mine == old or mine == new:
            out += new
        elif new == old:
            out += mine
        else:
            conflicts += 1
            out += [YOURS, *_ended(mine), SEPARATOR, *_ended(new), THEIRS]
        if i is not None:
            out.append(b[i])
            bi, yi, ti = be + 1, ye + 1, te + 1
    return "".join(out), conflicts
