"""scripts/gpu_check.sh: says so and exits 0 without a GPU; its table logic runs on CPU."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_without_a_gpu_says_so_and_exits_0():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    result = subprocess.run(
        ["bash", str(ROOT / "scripts/gpu_check.sh")], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and "no CUDA GPU" in result.stdout


@pytest.mark.slow
def test_gpu_check_table_on_cpu():
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts/gpu_check.py"),
            "--device",
            "cpu",
            "--steps",
            "30",
            "--only",
            "cnn fp16,ddp",
            "--tiny",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    assert len(rows) == 1 + 2, result.stdout + result.stderr  # the header and two rows
    assert all(row.count("|") == 6 for row in rows)
    assert "FAIL:" not in result.stdout, result.stdout
