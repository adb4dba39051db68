"""The pairwise matrix, computed from the option spec: every valid pair of option values
renders clean code and trains."""

import pytest
from conftest import ProjectImport, assert_ruff_clean, make_project

from scaffold.context import TEST_PROFILES
from scaffold.errors import SpecError
from scaffold.formatting import needs_black
from scaffold.generate import render
from scaffold.matrix import _pairs, pairwise, values
from scaffold.spec import OPTIONS, build_spec

ROWS = pairwise()


def test_pairwise_covers_every_valid_pair():
    covered = set().union(*map(_pairs, ROWS))
    names = [o.name for o in OPTIONS]
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            for va in values(a):
                for vb in values(b):
                    if ((a, va), (b, vb)) in covered:
                        continue
                    # An uncovered pair must be invalid by design.
                    with pytest.raises(SpecError):
                        spec = build_spec("proj", **{a: va, b: vb})
                        assert ((a, va), (b, vb)) in _pairs(spec)
                        pytest.fail(f"valid pair not covered: {a}={va}, {b}={vb}")
    assert len(ROWS) < 40


def test_pairwise_rows_are_clean(tmp_path):
    for i, spec in enumerate(ROWS):
        for rel, text in render(spec).items():
            if rel.endswith(".py"):
                assert not needs_black(text), f"{spec}: {rel}"
                compile(text, rel, "exec")
                (tmp_path / f"r{i}_{rel.replace('/', '_')}").write_text(text)
    assert_ruff_clean(tmp_path)


@pytest.mark.parametrize("row", range(len(ROWS)))
def test_pairwise_rows_train(tmp_path, row):
    pytest.importorskip("torch")
    spec = build_spec(f"pw{row}", **ROWS[row].answers())
    root = make_project(tmp_path, spec.name, **spec.answers())
    overrides = dict(TEST_PROFILES[spec.model]["tiny_overrides"])
    if spec.compile:
        overrides["compile"] = False  # real compilation is tested, marked slow, elsewhere
    if spec.amp:
        overrides["precision"] = "fp16" if row % 2 else "bf16"
    with ProjectImport(root, spec.package) as p:
        cfg = p.module("config").Config(
            out_dir=str(tmp_path / "run"), device="cpu", max_steps=4, eval_every=2, **overrides
        )
        metrics = p.module("train").train(cfg)
    assert metrics and all(v == v for v in metrics.values())  # finite, not NaN
