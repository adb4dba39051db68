"""Generation is atomic: a failure or Ctrl-C leaves nothing behind."""

import errno
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from scaffold.cli import app
from scaffold.errors import WriteError
from scaffold.generate import generate
from scaffold.spec import build_spec


def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    calls = []
    real = Path.write_text

    def interrupt(self, *args, **kwargs):
        calls.append(self)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", interrupt)
    result = CliRunner().invoke(app, ["new", str(tmp_path / "demo")])
    assert result.exit_code == 2 and "nothing was written" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_full_disk_is_a_clear_error_and_leaves_nothing(tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "rename", full)
    with pytest.raises(WriteError, match="No space left on device"):
        generate(build_spec("demo"), tmp_path / "demo")
    assert list(tmp_path.iterdir()) == []


def test_unwritable_target_exits_2(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = CliRunner().invoke(app, ["new", str(blocker / "demo")])
    assert result.exit_code == 2
    assert result.stderr.startswith("dlgen: error: cannot write the project")
    assert blocker.read_text() == "not a folder"
