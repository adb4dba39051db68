"""How dlgen's CLI reports and explains itself, whatever command is run.

Click prints a usage block of 4 to 17 lines for a bad value or a missing argument, and
Typer cuts command descriptions off with "..." and shows required arguments as `{NAME}`
with a `<str>` type. dlgen's contract is one line per error on stderr with exit code 2,
`--help` for more, and help that says what a value can be. The group class below turns
every usage error into that one line, and gives every command plain, complete help.
"""

from __future__ import annotations

import sys
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

try:
    from typer._click import exceptions as errors  # Typer 0.2x carries its own click
except ImportError:  # pragma: no cover - older Typer uses click itself
    from click import exceptions as errors

PREFIX = "dlgen: error: "


def error_line(message: str) -> str:
    """One line: click's messages may span lines ("No such option ...\\nDid you mean")."""
    return PREFIX + " ".join(message.split())


class Command(TyperCommand):
    """A command whose usage line and argument list name arguments plainly."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                name = param.metavar or (param.name or "").upper()
                pieces.append(name if param.required else f"[{name}]")
        return pieces

    def format_options(self, ctx: Any, formatter: Any) -> None:
        args, opts = [], []
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if param.param_type_name == "argument":  # its help says what it can be
                args.append((param.metavar or (param.name or "").upper(), param.help or ""))
            else:
                opts.append(record)
        for title, rows in (("Arguments", args), ("Options", opts)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


class Group(TyperGroup):
    """dlgen's command group: one-line errors, and help that is never cut off."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Typer has no hook for the class of every command; this one adds only help layout.
        for command in self.commands.values():
            if type(command) is TyperCommand:
                command.__class__ = Command

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        rows = [
            (name, command.get_short_help_str(limit=1000))  # the whole first sentence
            for name, command in self.commands.items()
            if not command.hidden
        ]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def _command_path(self, args: Any, prog_name: Any) -> str:
        """`dlgen new` for an error that click reports without its context."""
        args = list(sys.argv[1:] if args is None else args)
        first = next((a for a in args if not a.startswith("-")), None)
        return " ".join([prog_name or "dlgen", *([first] if first in self.commands else [])])

    def main(self, args: Any = None, prog_name: Any = None, **extra: Any) -> Any:
        """Run a command; a usage error is one line on stderr and exit code 2."""
        standalone = extra.pop("standalone_mode", True)
        try:
            if any("\x00" in str(a) for a in (args or ())):  # only in-process: argv cannot
                raise errors.UsageError("an argument holds a NUL character")
            code = super().main(args, prog_name, standalone_mode=False, **extra)
        except errors.NoArgsIsHelpError as e:  # bare `dlgen`: its help
            typer.echo(e.ctx.get_help() if e.ctx else "")
            code = 0
        except errors.UsageError as e:
            where = e.ctx.command_path if e.ctx else self._command_path(args, prog_name)
            hint = f" (see '{where} --help')"
            typer.echo(error_line(e.format_message().rstrip(".") + hint), err=True)
            code = 2
        except errors.ClickException as e:  # a bad file argument, ...
            typer.echo(error_line(e.format_message()), err=True)
            code = 2
        except OSError as e:  # a fault of the file system that no check foresaw
            where = f" ({e.filename})" if e.filename else ""
            typer.echo(error_line(f"{e.strerror or e}{where}; nothing was changed"), err=True)
            code = 2
        except typer.Abort:  # Ctrl-C at a prompt; -i's own case is handled by `new`
            typer.echo(error_line("interrupted; nothing was written"), err=True)
            code = 2
        code = code if isinstance(code, int) else 0
        if not standalone:
            return code
        sys.exit(code)
