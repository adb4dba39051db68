"""--tooling: pre-commit hooks and a GitHub Actions workflow whose commands work."""

import subprocess
import sys

import pytest
import yaml
from conftest import make_project

from scaffold.context import TOOL_VERSIONS
from scaffold.generate import render
from scaffold.spec import build_spec

TOOLING = (".pre-commit-config.yaml", ".github/workflows/tests.yml")


def test_only_asked_for():
    assert not set(TOOLING) & set(render(build_spec("demo")))
    assert set(TOOLING) <= set(render(build_spec("demo", tooling=True)))


def test_pre_commit_pins_the_checked_versions():
    config = yaml.safe_load(render(build_spec("demo", tooling=True))[TOOLING[0]])
    hooks = {r["repo"].rsplit("/", 1)[1]: r for r in config["repos"]}
    assert hooks["black-pre-commit-mirror"]["rev"] == TOOL_VERSIONS["black_version"]
    assert hooks["black-pre-commit-mirror"]["hooks"] == [{"id": "black"}]
    assert hooks["ruff-pre-commit"]["rev"] == "v" + TOOL_VERSIONS["ruff_version"]
    assert hooks["ruff-pre-commit"]["hooks"] == [{"id": "ruff-check"}]


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_the_workflow_lints_and_tests_and_its_commands_pass_here(tmp_path, model):
    root = make_project(tmp_path, "demo", model=model, tooling=True)
    workflow = yaml.safe_load((root / TOOLING[1]).read_text())
    steps = workflow["jobs"]["test"]["steps"]
    assert workflow[True] == ["push", "pull_request"]  # YAML 1.1 reads the key `on` as True
    install = next(s["run"] for s in steps if s.get("name") == "Install")
    assert "--index-url https://download.pytorch.org/whl/cpu" in install
    # Every command after the install (this machine has the packages) runs clean here.
    commands = [
        line.strip()
        for s in steps
        if "run" in s and s.get("name") != "Install"
        for line in s["run"].splitlines()
        if line.strip()
    ]
    assert commands == ["black --check .", "ruff check .", "python -m pytest -q"]
    # The project's own suite passing is test_pairwise_rows_pass_their_own_tests (slow), for
    # every row, tooling rows included; the formatter and linter run here.
    for command in commands[:2]:
        tool, *args = command.split()
        # This interpreter's tools, wherever PATH points.
        argv = [sys.executable, *([] if tool == "python" else ["-m", tool]), *args]
        result = subprocess.run(argv, cwd=root, capture_output=True, text=True)
        assert result.returncode == 0, f"{command}: {result.stdout[-2000:]}{result.stderr[-2000:]}"


def test_the_gpu_job_is_opt_in_and_runs_the_cuda_checks(tmp_path):
    root = make_project(tmp_path, "gpuci", model="gpt", amp=True, tooling=True)
    job = yaml.safe_load((root / TOOLING[1]).read_text())["jobs"]["gpu"]
    assert job["if"] == "vars.GPU_CI == 'true'" and job["runs-on"] == ["self-hosted", "gpu"]
    assert job["steps"][-1]["run"] == "python -m pytest -q"
    gpu_test = (root / "tests/test_gpu.py").read_text()
    assert 'set_sync_debug_mode("error")' in gpu_test and 'device="cuda"' in gpu_test
    assert not (make_project(tmp_path, "plain") / "tests/test_gpu.py").exists()
