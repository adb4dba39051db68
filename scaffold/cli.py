"""The thin CLI shell: parse, call the pipeline, turn typed errors into exit code 2."""

from __future__ import annotations

import inspect
import json
import sys
from pathlib import Path

import typer

from scaffold import __version__
from scaffold.errors import DlgenError, SnippetError, SpecError
from scaffold.shell import Group, error_line
from scaffold.spec import OPTIONS, SNIPPETS, build_spec
from scaffold.write import user_path

app = typer.Typer(
    cls=Group,  # one-line usage errors, help never cut off
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: rich truncates long flag names on narrow terminals
    help="Generate a standalone, modern PyTorch training project that you own.",
)


def fail(message: str) -> None:
    typer.echo(error_line(message), err=True)
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
    interactive: bool = False,
    **options: object,
) -> None:
    """Write a new training project at PATH; its last part names the project."""
    try:
        target = user_path(path).absolute()
        build_spec(target.name)  # a bad name fails before any question
        if interactive:
            options = ask(target.name, options)
        spec = build_spec(target.name, **options)
        from scaffold.generate import generate, render  # lazy: keeps --help fast

        if dry_run:
            for rel in sorted(render(spec)):
                typer.echo(str(target / rel))
            return
        report = generate(spec, target, force=force)
    except DlgenError as e:
        fail(str(e))
    except typer.Abort:  # Ctrl-C at a question, or its input ended
        if not sys.stdin.isatty():
            fail("-i needs a terminal; give the options as flags")
        fail("interrupted; nothing was written")
    except KeyboardInterrupt:
        fail("interrupted; nothing was written")
    for rel, saved in report.backups.items():
        typer.echo(f"replaced {rel} (old content saved as {saved})")
    typer.echo(f"created {spec.name} in {target}")
    typer.echo(f"  cd {path} && python -m {spec.package}.train")


def ask(name: str, given: dict) -> dict:
    """Ask for every option not given on the command line, from the spec: its help, its
    values and its default. An answer that breaks a rule is explained and asked again."""
    answers = dict(given)
    for o in OPTIONS:
        if answers.get(o.name) is not None:
            continue
        if o.models and (answers.get("model") or "mlp") not in o.models:
            continue  # does not apply to the chosen model
        while True:
            question = f"{o.flag[2:]}: {o.help}"
            if o.is_flag:
                value = typer.confirm(question, default=o.default)
            else:
                value = typer.prompt(f"{question} ({'|'.join(o.values)})", default=o.default)
            try:
                build_spec(name, **{**answers, o.name: value})
                break
            except SpecError as e:  # a value not among the choices, or a broken rule
                typer.echo(f"  {e}", err=True)
        answers[o.name] = value
    return answers


def _option_params(recorded: bool = False) -> list[inspect.Parameter]:
    """One flag per option of the spec, for `new` and `update` alike (None: not given).
    For update, an option not given keeps the value recorded in .dlgen.toml."""
    P = inspect.Parameter
    params = []
    for o in OPTIONS:
        if o.is_flag:
            opt = typer.Option(None, f"{o.flag}/--no-{o.flag[2:]}", help=o.help, show_default=False)
            params.append(P(o.name, P.KEYWORD_ONLY, annotation=bool | None, default=opt))
        else:
            meta = "|".join(o.values)
            default = "as recorded" if recorded else o.default
            opt = typer.Option(
                None,
                o.flag,
                metavar=f"[{meta}]",
                show_default=False,
                help=f"{o.help} [default: {default}]",
            )
            params.append(P(o.name, P.KEYWORD_ONLY, annotation=str | None, default=opt))
    return params


def _flag(name: str, help: str, *short: str) -> inspect.Parameter:
    P = inspect.Parameter
    option = typer.Option(False, "--" + name.replace("_", "-"), *short, help=help)
    return P(name, P.KEYWORD_ONLY, annotation=bool, default=option)


def _path(default: object, help: str) -> inspect.Parameter:
    argument = typer.Argument(default, metavar="PATH", show_default=False, help=help)
    return inspect.Parameter(
        "path", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Path, default=argument
    )


def _command(name: str, function, params: list[inspect.Parameter]) -> None:
    """Register function under name with the given parameters (built from the spec)."""

    def command(**kwargs: object) -> None:
        function(**kwargs)

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__doc__ = function.__doc__
    app.command(name)(command)


_command(
    "new",
    new,
    [
        _path(..., "Folder to create; its last part is the project name."),
        *_option_params(),
        _flag(
            "force",
            "Write into a non-empty folder; changed files are kept as FILE.orig (or .orig.N).",
        ),
        _flag("dry_run", "List the files that would be written, and write nothing."),
        _flag("interactive", "Ask for each option not given, with its help and values.", "-i"),
    ],
)


def update(path: Path = Path("."), dry_run: bool = False, **changes: object) -> None:
    """Re-render the project at PATH from its .dlgen.toml, with any options given changed,
    and merge the result into your files: your edits are kept and the template's changes
    applied. Where both changed the same lines, the file gets <<<<<<< markers and the
    command exits 1."""
    try:
        from scaffold.update import apply_update, plan_update, update_diff  # lazy: fast --help

        root = user_path(path).absolute()
        report = plan_update(root, **changes)
        if dry_run:
            typer.echo(update_diff(root, report), nl=False)
        else:
            apply_update(root, report)
    except DlgenError as e:
        fail(str(e))
    except KeyboardInterrupt:
        fail("interrupted; nothing was changed")
    verb = "would " if dry_run else ""
    for label, paths in [
        ("add", report.added),
        ("update", report.updated),
        ("merge your edits into", report.merged),
        ("remove", report.removed),
    ]:
        for rel in paths:
            typer.echo(f"{verb}{label} {rel}")
    for rel in report.kept:
        typer.echo(f"kept yours: {rel} (you deleted or changed what dlgen changed or dropped)")
    for rel in report.conflicts:
        typer.echo(f"CONFLICT {rel}: both changed the same lines; resolve the <<<<<<< markers")
    if not report.changed:
        typer.echo("already up to date")
    elif not any([report.added, report.updated, report.merged, report.removed]):
        typer.echo(f"{verb}record the new answers and base in .dlgen.toml and .dlgen/")
    if report.conflicts:
        raise typer.Exit(1)


_command(
    "update",
    update,
    [
        _path(Path("."), "The project (default: .)."),
        *_option_params(recorded=True),
        _flag("dry_run", "Show the diff the update would apply, conflicts marked; write nothing."),
    ],
)


FLAGS = [o for o in OPTIONS if o.is_flag]


@app.command("add")
def add(
    features: list[str] = typer.Argument(
        ...,
        metavar="FEATURE...",
        help=f"One or more of: {', '.join(o.flag[2:] for o in FLAGS)}.",
    ),
    path: Path = typer.Option(Path("."), "--path", help="The project (default: .)."),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Show the diff that would be applied; write nothing."
    ),
) -> None:
    """Add features to an existing project: `dlgen add ema amp` is `dlgen update --ema --amp`."""
    by_name = {o.flag[2:]: o.name for o in FLAGS}
    unknown = [f for f in features if f not in by_name]
    if unknown:
        fail(f"unknown feature {unknown[0]!r}; choose from: {', '.join(by_name)}")
    update(path=path, dry_run=dry_run, **{by_name[f]: True for f in features})


@app.command("snippet")
def snippet(
    name: str = typer.Argument(
        ...,
        metavar="NAME",
        help=f"One of: {', '.join(s.name for s in SNIPPETS)} (`dlgen list` says what each is).",
    ),
    teach: bool = typer.Option(False, "--teach", help="Add comments that explain why."),
    lang: str = typer.Option("en", "--lang", metavar="[en|zh]", help="Comment language."),
    notebook: bool = typer.Option(
        False, "--notebook", help="Write a Jupyter notebook: explanations as markdown cells."
    ),
    output: Path | None = typer.Option(
        None, "-o", "--output", help="Write to this file instead of printing."
    ),
) -> None:
    """Print a standalone, runnable file (or notebook) for one section of the cheat sheet."""
    try:
        from scaffold.generate import snippet as render_snippet
        from scaffold.generate import snippet_notebook
        from scaffold.write import write_one

        if notebook and output is not None and output.suffix != ".ipynb":
            raise SnippetError(f"--notebook writes a notebook: name it FILE.ipynb, not {output}")
        if notebook:
            text = snippet_notebook(name, teach=teach, lang=lang)
        else:
            text = render_snippet(name, teach=teach, lang=lang)
        if output is None:
            typer.echo(text, nl=False)
        else:
            saved = write_one(output, text)
            kept = f" (old content saved as {saved})" if saved else ""
            run = f"jupyter lab {output}" if notebook else f"python {output}"
            typer.echo(f"wrote {output}{kept}; run it with: {run}")
    except DlgenError as e:
        fail(str(e))


@app.command("course")
def course(
    path: Path = typer.Argument(..., metavar="PATH", help="The folder to create."),
    lang: str = typer.Option("en", "--lang", metavar="[en|zh]", help="Language of the course."),
    sections: str | None = typer.Option(
        None, "--sections", metavar="a,b,...", help="Only these sections (default: all)."
    ),
    force: bool = typer.Option(False, "--force", help="Write into a non-empty folder."),
) -> None:
    """Write a course: one notebook per section, exercises/ with checks, and solutions/."""
    try:
        from scaffold.generate import course as render_course
        from scaffold.write import write_project

        target = user_path(path).absolute()
        files = render_course(lang=lang, sections=sections)
        write_project(target, files, force=force)
    except DlgenError as e:
        fail(str(e))
    except KeyboardInterrupt:
        fail("interrupted; nothing was written")
    count = sum(1 for rel in files if "/" not in rel and rel.endswith(".ipynb"))
    typer.echo(f"wrote a course of {count} sections in {target}; start with README.md")


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
