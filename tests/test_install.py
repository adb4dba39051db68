"""A non-editable install finds its templates from any folder."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_install_ships_the_templates(tmp_path):
    """Install the wheel into a folder of its own and run it with this interpreter, whose
    environment (a virtualenv, a conda env or a bare interpreter alike) gives jinja2, typer
    and black. A venv with --system-site-packages would see the base interpreter's packages,
    not a virtualenv's, and lack typer there."""
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", target, ROOT],
        check=True,
    )
    # The wheel must win over any editable install of the checkout: PYTHONPATH comes first.
    env = {**os.environ, "PYTHONPATH": str(target)}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run(
        [
            sys.executable,
            "-c",
            "import scaffold, scaffold.render as r; print(scaffold.__file__, r.templates_dir())",
        ],
        cwd=elsewhere,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert str(target) in where and str(ROOT) not in where, where
    dlgen = target / "bin" / "dlgen"  # the console script, run by this interpreter
    subprocess.run([sys.executable, dlgen, "new", "demo"], cwd=elsewhere, env=env, check=True)
    assert (elsewhere / "demo" / "demo" / "train.py").is_file()
