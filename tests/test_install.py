"""A non-editable install finds its templates from any folder."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_install_ships_the_templates(tmp_path):
    venv = tmp_path / "venv"
    # System site-packages give jinja2, typer and black without a download; dlgen itself
    # comes from the wheel, which must win over any editable install of the checkout.
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    py = venv / "bin" / "python"
    subprocess.run([py, "-m", "pip", "install", "-q", "--no-deps", str(ROOT)], check=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run(
        [
            py,
            "-c",
            "import scaffold, scaffold.render as r; print(scaffold.__file__, r.templates_dir())",
        ],
        cwd=elsewhere,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert str(venv) in where and str(ROOT) not in where, where
    subprocess.run([venv / "bin" / "dlgen", "new", "demo"], cwd=elsewhere, check=True)
    assert (elsewhere / "demo" / "demo" / "train.py").is_file()
