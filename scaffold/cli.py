"""The thin CLI shell: parse, call the pipeline, turn typed errors into exit code 2."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import typer

from scaffold import __version__
from scaffold.errors import DlgenError
from scaffold.spec import OPTIONS, SNIPPETS, build_spec

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: rich truncates long flag names on narrow terminals
    help="Generate a standalone, modern PyTorch training project that you own.",
)


def fail(message: str) -> None:
    typer.echo(f"dlgen: error: {message}", err=True)
    raise typer.Exit(2)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"dlgen {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Generate a standalone, modern PyTorch training project that you own."""


def new(
    path: Path,
    force: bool = False,
    dry_run: bool = False,
    **options: object,
) -> None:
    """Write a new training project at PATH; its last part names the project."""
    try:
        target = path.expanduser().absolute()
        spec = build_spec(target.name, **options)
        from scaffold.generate import generate, render  # lazy: keeps --help fast

        if dry_run:
            for rel in sorted(render(spec)):
                typer.echo(str(target / rel))
            return
        report = generate(spec, target, force=force)
    except DlgenError as e:
        fail(str(e))
    except KeyboardInterrupt:
        fail("interrupted; nothing was written")
    for rel in report.replaced:
        typer.echo(f"replaced {rel} (old content saved as {rel}.orig)")
    typer.echo(f"created {spec.name} in {target}")
    typer.echo(f"  cd {path} && python -m {spec.package}.train")


def _new_signature() -> inspect.Signature:
    """Build `new`'s parameters from the option spec: one flag per option."""
    P = inspect.Parameter
    params = [
        P(
            "path",
            P.POSITIONAL_OR_KEYWORD,
            annotation=Path,
            default=typer.Argument(
                ..., metavar="PATH", help="Folder to create; its last part is the project name."
            ),
        ),
    ]
    for o in OPTIONS:
        if o.is_flag:
            opt = typer.Option(None, f"{o.flag}/--no-{o.flag[2:]}", help=o.help, show_default=False)
            params.append(P(o.name, P.KEYWORD_ONLY, annotation=bool | None, default=opt))
        else:
            meta = "|".join(o.values)
            opt = typer.Option(
                None,
                o.flag,
                metavar=f"[{meta}]",
                show_default=False,
                help=f"{o.help} [default: {o.default}]",
            )
            params.append(P(o.name, P.KEYWORD_ONLY, annotation=str | None, default=opt))
    params += [
        P(
            "force",
            P.KEYWORD_ONLY,
            annotation=bool,
            default=typer.Option(
                False,
                "--force",
                help="Write into a non-empty folder; changed files are kept as FILE.orig.",
            ),
        ),
        P(
            "dry_run",
            P.KEYWORD_ONLY,
            annotation=bool,
            default=typer.Option(
                False, "--dry-run", help="List the files that would be written, and write nothing."
            ),
        ),
    ]
    return inspect.Signature(params)


def _new(**kwargs: object) -> None:
    new(**kwargs)


_new.__signature__ = _new_signature()  # type: ignore[attr-defined]
_new.__doc__ = new.__doc__
app.command("new")(_new)


@app.command("snippet")
def snippet(
    name: str = typer.Argument(..., metavar="NAME", help="A section: see `dlgen list`."),
    teach: bool = typer.Option(False, "--teach", help="Add comments that explain why."),
    lang: str = typer.Option("en", "--lang", metavar="[en|zh]", help="Comment language."),
    output: Path | None = typer.Option(
        None, "-o", "--output", help="Write to this file instead of printing."
    ),
) -> None:
    """Print a standalone, runnable file for one section of the cheat sheet."""
    try:
        from scaffold.generate import snippet as render_snippet
        from scaffold.write import write_one

        text = render_snippet(name, teach=teach, lang=lang)
        if output is None:
            typer.echo(text, nl=False)
        else:
            write_one(output, text)
            typer.echo(f"wrote {output}; run it with: python {output}")
    except DlgenError as e:
        fail(str(e))


@app.command("list")
def list_options(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List every model, generation option and snippet, with what each one does."""
    data = [
        {
            "option": o.flag,
            "help": o.help,
            "default": o.default,
            "values": [{"value": c.value, "help": c.help} for c in o.choices],
            "models": list(o.models),
        }
        for o in OPTIONS
    ]
    snippets = [{"name": s.name, "help": s.help} for s in SNIPPETS]
    if as_json:
        out = {"options": data, "snippets": snippets}
        typer.echo(json.dumps(out, indent=2, ensure_ascii=False))
        return
    for o in OPTIONS:
        scope = f" (only --model {'/'.join(o.models)})" if o.models else ""
        typer.echo(f"{o.flag}{scope}: {o.help}")
        for c in o.choices:
            mark = "*" if c.value == o.default else " "
            typer.echo(f"  {mark} {c.value:<16} {c.help}")
    typer.echo("\nsnippets (dlgen snippet NAME [--teach] [--lang zh] [-o FILE]):")
    for s in SNIPPETS:
        typer.echo(f"    {s.name:<18} {s.help}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
