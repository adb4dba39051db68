"""dlgen: generate standalone, modern PyTorch training projects from one option spec."""

__version__ = "0.1.0"
