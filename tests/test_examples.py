"""The golden projects in examples/ are exactly what dlgen generates today."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from conftest import assert_project_tests_pass
from update_examples import EXAMPLES

from scaffold.generate import render
from scaffold.spec import build_spec


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_is_current(name):
    folder = ROOT / "examples" / name
    expected = render(build_spec(name, **EXAMPLES[name]))
    on_disk = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert on_disk == set(expected), "run: python scripts/update_examples.py"
    for rel, text in expected.items():
        assert (folder / rel).read_text(
            encoding="utf-8"
        ) == text, f"examples/{name}/{rel} is stale; run: python scripts/update_examples.py"


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_passes_its_own_tests(name, tmp_path):
    import shutil

    folder = tmp_path / name
    shutil.copytree(ROOT / "examples" / name, folder)
    assert_project_tests_pass(folder)
