"""The pairwise matrix, computed from the option spec: every valid pair of option values
renders clean code and trains."""

import pytest
from conftest import (
    HostReads,
    ProjectImport,
    assert_ruff_clean,
    make_project,
    run_project_tests,
    seed_mlflow,
)

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
def test_pairwise_rows_train_without_host_reads_between_events(tmp_path, row, monkeypatch):
    """Every row trains, and a step that neither logs, evaluates nor saves reads nothing back
    from the device: the GPU is never left idle waiting for the CPU."""
    pytest.importorskip("torch")
    spec = build_spec(f"pw{row}", **ROWS[row].answers())
    root = make_project(tmp_path, spec.name, **spec.answers())
    overrides = dict(TEST_PROFILES[spec.model]["tiny_overrides"])
    if spec.compile:
        overrides["compile"] = False  # real compilation is tested, marked slow, elsewhere
    if spec.amp:
        # FSDP refuses fp16: a GradScaler's found_inf is per shard there
        overrides["precision"] = "fp16" if row % 2 and not spec.fsdp else "bf16"
    steps = 8  # events at step 0 (validation) and step 8 (log, validation, save) only
    if spec.tracker == "mlflow":
        seed_mlflow(tmp_path / "run")
    with ProjectImport(root, spec.package) as p:
        cfg = p.module("config").Config(
            out_dir=str(tmp_path / "run"),
            device="cpu",
            max_steps=steps,
            log_every=steps,
            eval_every=steps,
            save_every=steps,
            **overrides,
        )
        metrics_log = p.module("metrics").MetricsLog
        counter = HostReads(str(root / spec.package / "data.py"))
        real_step = metrics_log.step

        def step(self):
            real_step(self)
            counter.step += 1

        monkeypatch.setattr(metrics_log, "step", step)
        with counter:
            metrics = p.module("train").train(cfg)
    assert metrics and all(v == v for v in metrics.values())  # finite, not NaN
    quiet = {s: counter.reads.get(s, 0) for s in range(1, steps)}
    assert not any(quiet.values()), f"host reads on steps without events: {quiet}"
    assert counter.reads.get(steps, 0) > 0  # the final events do read (sanity check)


@pytest.mark.slow
@pytest.mark.parametrize("row", range(len(ROWS)))
def test_pairwise_rows_pass_their_own_tests(tmp_path, row):
    """What a user runs first after `dlgen new`: `pytest` inside the project. Every pairwise
    row's own suite must pass, whatever its schedule, optimizer or model."""
    pytest.importorskip("torch")
    spec = build_spec(f"own{row}", **ROWS[row].answers())
    root = make_project(tmp_path, spec.name, **spec.answers())
    code, report = run_project_tests(root, spec.package)
    assert code == 0, f"{spec}\n{report[-3000:]}"
