"""Option combinations computed from the spec, for the test matrix (and later, the docs)."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator

from scaffold.errors import SpecError
from scaffold.spec import OPTIONS, ProjectSpec, build_spec


def values(name: str) -> tuple:
    option = next(o for o in OPTIONS if o.name == name)
    if option.is_flag:
        return (False, True)
    return tuple(c.value for c in option.choices if not c.alias)


def combinations(axes: tuple[str, ...], name: str = "proj") -> Iterator[ProjectSpec]:
    """Every valid spec over the product of `axes`; each other option cycles through its
    values, so that all of them appear somewhere in the matrix."""
    others = [o.name for o in OPTIONS if o.name not in axes]
    for i, combo in enumerate(itertools.product(*(values(a) for a in axes))):
        given = dict(zip(axes, combo, strict=True))
        for offset, other in enumerate(others):
            choices = values(other)
            given[other] = choices[(i + offset) % len(choices)]
        for drop in (None, *others):  # an option that doesn't apply falls back to its default
            try:
                yield build_spec(name, **{k: v for k, v in given.items() if k != drop})
                break
            except SpecError:
                continue


def _spec_from(row: dict, name: str) -> ProjectSpec | None:
    """The spec for a row of values, leaving out options that do not apply to its model."""
    given = dict(row)
    for option in OPTIONS:
        if option.models and given["model"] not in option.models:
            given[option.name] = None
    try:
        return build_spec(name, **given)
    except SpecError:
        return None


def _pairs(spec: ProjectSpec) -> set:
    items = [(o.name, getattr(spec, o.name)) for o in OPTIONS]
    return {(a, b) for i, a in enumerate(items) for b in items[i + 1 :]}


def pairwise(name: str = "proj", seed: int = 0, candidates: int = 40) -> list[ProjectSpec]:
    """A small set of valid specs in which every valid pair of option values appears
    (greedy, AETG-style: each row is the best of `candidates` random rows)."""
    rng = random.Random(seed)
    names = [o.name for o in OPTIONS]
    all_pairs = {
        ((a, va), (b, vb))
        for i, a in enumerate(names)
        for b in names[i + 1 :]
        for va in values(a)
        for vb in values(b)
    }
    uncovered, rows = set(all_pairs), []
    while uncovered:
        best, gain = None, 0
        for _ in range(candidates):
            spec = _spec_from({n: rng.choice(values(n)) for n in names}, name)
            if spec is not None and len(_pairs(spec) & uncovered) > gain:
                best, gain = spec, len(_pairs(spec) & uncovered)
        if best is None:
            # What is left can't be covered by chance alone; try each pair directly.
            for pair in sorted(uncovered, key=repr):
                for _ in range(candidates):  # random completions until one is valid
                    row = {n: rng.choice(values(n)) for n in names} | dict(pair)
                    spec = _spec_from(row, name)
                    if spec is not None and pair in _pairs(spec):
                        best = spec
                        break
                if best is not None:
                    break
            if best is None:
                break  # the remaining pairs are invalid by design (e.g. gpt + regression)
        uncovered -= _pairs(best)
        rows.append(best)
    return rows
