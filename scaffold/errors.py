"""Typed errors. The CLI turns every DlgenError into one line on stderr and exit code 2."""


class DlgenError(Exception):
    """A mistake or fault the user can fix; the message is one clear line."""


class SpecError(DlgenError):
    """An invalid project name, option value or option combination."""


class TargetError(DlgenError):
    """The target folder cannot be used as asked (exists, not a folder, ...)."""


class WriteError(DlgenError):
    """Writing the project failed (permissions, full disk, ...); nothing was left half-written."""


class SnippetError(DlgenError):
    """An unknown snippet name."""
