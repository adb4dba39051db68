"""Option combinations computed from the spec, for the test matrix (and later, the docs)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from scaffold.errors import SpecError
from scaffold.spec import OPTIONS, ProjectSpec, build_spec


def values(name: str) -> tuple:
    option = next(o for o in OPTIONS if o.name == name)
    return (False, True) if option.is_flag else option.values


def combinations(axes: tuple[str, ...], name: str = "proj") -> Iterator[ProjectSpec]:
    """Every valid spec over the product of `axes`; each other option cycles through its
    values, so that all of them appear somewhere in the matrix."""
    others = [o.name for o in OPTIONS if o.name not in axes]
    for i, combo in enumerate(itertools.product(*(values(a) for a in axes))):
        given = dict(zip(axes, combo))
        for offset, other in enumerate(others):
            choices = values(other)
            given[other] = choices[(i + offset) % len(choices)]
        for drop in (None, *others):  # an option that doesn't apply falls back to its default
            try:
                yield build_spec(name, **{k: v for k, v in given.items() if k != drop})
                break
            except SpecError:
                continue
