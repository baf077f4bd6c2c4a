"""The `visextract` command line: parses options, calls the Python API, prints with Rich.

Heavy libraries load only inside commands, so `visextract --help` starts fast.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

app = typer.Typer(
    name="visextract",
    help=(
        "Turn folders of images into validated, queryable records.\n\n"
        "Examples:\n\n"
        "  visextract run photos/                      # offline tools into visextract.db\n\n"
        "  visextract status --list                    # what is in the database\n\n"
        "  visextract export --format jsonl -o out.jsonl"
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
)
# Piped output gets wide lines, so paths in tables are not folded.
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, soft_wrap=True)

F = TypeVar("F", bound=Callable[..., Any])

DbOption = Annotated[
    str | None,
    typer.Option("--db", help="Database URL (default: $VISEXTRACT_DB or sqlite:///visextract.db).", show_default=False),
]


def friendly_errors(command: F) -> F:
    """Print user errors as one line on stderr and exit non-zero; never a traceback for them."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from visextract.errors import VisextractError, speaking_cli

        try:
            with speaking_cli():
                return command(*args, **kwargs)
        except VisextractError as exc:
            err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, markup=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def _settings(db: str | None = None, **options: Any) -> Any:
    """Settings from VISEXTRACT_* variables, then these options; bad values are one-line usage errors."""
    from pydantic import ValidationError

    from visextract.config import Settings
    from visextract.errors import UsageError

    try:
        settings = Settings()
    except ValidationError as exc:
        error = exc.errors()[0]
        name = "VISEXTRACT_" + str(error["loc"][0]).upper() if error["loc"] else "a VISEXTRACT_ variable"
        raise UsageError(f"{name} {error['input']!r}: {error['msg'].lower()}") from None
    return settings.updated(db=db, **options)


def _read_store(db: str | None) -> Any:
    """The database for a read command: one that exists (a mistyped URL is an error, never a new file)."""
    from visextract.query import open_store

    return open_store(_settings(db).db)


def display_path(path: str) -> str:
    """A path for a terminal table: relative when shorter, control characters (a newline in a file name)
    shown escaped so they cannot break the table, and Rich markup escaped."""
    try:
        shown = os.path.relpath(path)
    except ValueError:
        shown = path
    if len(shown) > len(path):
        shown = path
    return escape(_printable(shown))


def _printable(text: str) -> str:
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def _split(values: str | None) -> list[str]:
    return [v.strip() for v in (values or "").split(",") if v.strip()]


def _tool_list(tools: str | None) -> list[str] | None:
    """`--tools a,b` as a list; not given: None (the schema's defaults); given but naming none: an error."""
    from visextract.errors import UsageError

    if tools is None:
        return None
    names = _split(tools)
    if not names:
        raise UsageError(f"--tools {tools!r} names no tool: give a comma-separated list, e.g. --tools classifier,ocr")
    return names


def _parse_models(values: list[str] | None) -> dict[str, str]:
    from visextract.errors import UsageError

    models = {}
    for value in values or []:
        tool, sep, model = value.partition("=")
        if not sep or not tool.strip() or not model.strip():
            raise UsageError(
                f"--model {value!r}: expected TOOL=HF_ID_OR_PATH, e.g. classifier=google/vit-base-patch16-224"
            )
        models[tool.strip()] = model.strip()
    return models


def _print_version(value: bool) -> None:
    if value:
        from visextract import __version__

        out.print(f"visextract {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show progress details and warnings (anywhere on the line).")
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    from rich.logging import RichHandler

    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=err, show_path=False, show_time=False)],
        force=True,
    )
    logging.captureWarnings(True)  # library warnings (e.g. corrupt EXIF) go through logging, shown with -v
    for noisy in ("httpx", "transformers", "sentence_transformers", "urllib3", "py.warnings"):
        logging.getLogger(noisy).setLevel(logging.WARNING if verbose else logging.ERROR)


@app.command()
@friendly_errors
def run(
    paths: Annotated[list[Path], typer.Argument(help="Image files or folders (searched recursively).")],
    db: DbOption = None,
    schema: Annotated[str, typer.Option(help="Record schema: a built-in name (see `visextract schemas`).")] = "scene",
    tools: Annotated[
        str | None,
        typer.Option(help="Comma-separated tools (default: the schema's, e.g. classifier,faces,ocr,colors)."),
    ] = None,
    model: Annotated[
        list[str] | None,
        typer.Option("--model", help="Swap a tool's model: TOOL=HF_ID_OR_PATH (repeatable)."),
    ] = None,
    detector_threshold: Annotated[
        float | None, typer.Option(help="Score cut-off for detector/openvocab boxes (defaults 0.5 / 0.1).")
    ] = None,
    labels: Annotated[
        str | None, typer.Option(help='Labels for zeroshot and text queries for openvocab: "cat,dog,car".')
    ] = None,
    question: Annotated[str | None, typer.Option(help="The question the vqa tool answers for every image.")] = None,
    skip_missing_tools: Annotated[
        bool, typer.Option(help="Drop tools whose model is unavailable instead of stopping.")
    ] = False,
    llm: Annotated[
        str,
        typer.Option(
            help="none, openai (any OpenAI-compatible server) or local; default: openai if OPENAI_API_KEY set"
        ),
    ] = "auto",
    llm_model: Annotated[
        str | None, typer.Option(help="LLM model name (openai; default gpt-4o-mini) or HF id/path (local).")
    ] = None,
    concurrency: Annotated[int, typer.Option(help="LLM calls in flight at once.")] = 8,
    rpm: Annotated[float | None, typer.Option(help="At most this many LLM requests a minute.")] = None,
    budget_usd: Annotated[
        float | None,
        typer.Option(help="Stop calling the LLM once this much is spent; the rest get tools-only records."),
    ] = None,
    max_reasks: Annotated[
        int, typer.Option(help="Re-ask the LLM at most N times when its answer does not validate.")
    ] = 2,
    image_detail: Annotated[str, typer.Option(help="Image detail sent to the LLM: low, high or auto.")] = "auto",
    force: Annotated[bool, typer.Option(help="Redo images that are already done.")] = False,
    discard_reviews: Annotated[
        bool, typer.Option(help="Redo reviewed records and drop their human values (kept otherwise).")
    ] = False,
    limit: Annotated[int | None, typer.Option(help="Process at most N images.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Images per model batch.")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = None,
    engine: Annotated[
        str, typer.Option(help="local (this process) or ray (Ray Data on a cluster: pip install 'visextract\\[ray]').")
    ] = "local",
    ray_address: Annotated[
        str | None,
        typer.Option(help="Ray cluster to join, e.g. HEAD:6379 or auto (default: $RAY_ADDRESS, else a local one)."),
    ] = None,
    gpus_per_worker: Annotated[
        float | None, typer.Option(help="Ray: GPUs per model set, e.g. 0.5 to put two on each GPU (default 1).")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Ray: model sets at most (default: one per GPU share, or one per node).")
    ] = None,
) -> None:
    """Extract records from images.

    Examples:

      visextract run photos/

      visextract run scans/ receipts/ --tools ocr,colors --db sqlite:///docs.db

      visextract run photos/ --force --limit 100

      visextract run shop/ --tools detector,zeroshot --labels "shoe,bag,hat" --detector-threshold 0.7

      visextract run photos/ --model classifier=google/vit-base-patch16-224

      OPENAI_BASE_URL=http://localhost:8000/v1 visextract run cars/ --schema vehicle --llm-model M

      visextract run /mnt/photos --engine ray --ray-address auto --db postgresql+psycopg://user@db/photos
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from visextract.extractor import Extractor

    extractor = Extractor(
        schema=schema,
        tools=_tool_list(tools),
        models=_parse_models(model),
        labels=_split(labels),
        question=question,
        detector_threshold=detector_threshold,
        skip_missing_tools=skip_missing_tools,
        llm=llm,
        llm_model=llm_model,
        concurrency=concurrency,
        rpm=rpm,
        budget_usd=budget_usd,
        max_reasks=max_reasks,
        image_detail=image_detail,
        settings=_settings(db, batch_size=batch_size, device=device),
        engine=engine,
        ray_address=ray_address,
        gpus_per_worker=gpus_per_worker,
        workers=workers,
    )
    progress = Progress(
        TextColumn("[bold]{task.fields[phase]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]} img/s"),
        TimeElapsedColumn(),
        TextColumn("[dim]{task.fields[last]}"),
        console=err,
        transient=False,
    )
    task = progress.add_task("extract", total=None, rate="-", last="", phase="starting")

    def on_start(total: int | None) -> None:  # ray: None while the listing streams, then again with the total
        progress.update(task, total=total)
        if not progress.live.is_started:
            progress.reset(task, total=total, rate="-", last="", phase="extracting")  # the clock starts now
            progress.start()

    def on_status(phase: str) -> None:
        progress.update(task, phase=phase)

    def on_image(outcome: Any) -> None:
        if outcome.status == "cancelled":  # left for the next run (Ctrl-C): not done, so not counted
            return
        progress.advance(task)
        elapsed = progress.tasks[0].elapsed or 0
        done = progress.tasks[0].completed
        rate = f"{done / elapsed:.2f}" if elapsed > 0 else "-"
        progress.update(task, rate=rate, last=escape(_printable(Path(outcome.path).name[-40:])))

    def on_abort() -> None:  # a second Ctrl-C: leave now, whatever is still running
        if progress.live.is_started:
            progress.stop()
        err.print("[red]aborted[/red]: what was saved is kept; run the same command again to continue")
        _leave_now(130)

    try:
        summary = extractor.run(
            *paths, force=force, limit=limit, discard_reviews=discard_reviews, on_start=on_start, on_image=on_image,
            on_status=on_status,
            on_abort=on_abort,
        )  # fmt: skip
    finally:
        if progress.live.is_started:
            progress.stop()
    if summary.found == 0:
        err.print(
            f"[yellow]no image files found[/yellow] in {', '.join(escape(str(p)) for p in paths)} "
            f"(looked for {', '.join(sorted(IMAGE_SUFFIXES_SHOWN))}...)",
            highlight=False,
        )
    _print_summary(summary, extractor.store.safe_url)
    if summary.interrupted:  # everything is saved; models may still be loading: do not wait for them
        _leave_now(130)


def _leave_now(code: int) -> None:
    """Exit at once (no interpreter teardown, which would wait for model loads still running)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


IMAGE_SUFFIXES_SHOWN = (".jpg", ".png", ".webp", ".tif", ".gif", ".bmp")


def _print_summary(summary: Any, db_url: str) -> None:
    rate = summary.total / summary.seconds if summary.seconds else 0.0
    parts = [f"[green]{summary.processed} processed[/green]"]
    if summary.needs_review:
        parts.append(f"[yellow]{summary.needs_review} need review[/yellow]")
    parts.append(f"{summary.skipped} skipped")
    parts.append(f"[red]{summary.failed} failed[/red]" if summary.failed else "0 failed")
    if summary.missing:
        parts.append(f"[yellow]{summary.missing} path{'' if summary.missing == 1 else 's'} missing[/yellow]")
    out.print(f"{', '.join(parts)} in {summary.seconds:.1f} s ({rate:.2f} img/s) -> {db_url}")
    if summary.llm_problem:
        out.print(f"[yellow]LLM unavailable[/yellow]: {escape(summary.llm_problem)}", highlight=False)
    if summary.llm_cost_usd is not None:
        out.print(f"LLM cost: ${summary.llm_cost_usd:.4f}")
    if summary.budget_skipped:
        out.print(
            f"[yellow]LLM budget spent[/yellow]: {summary.budget_skipped} images got tools-only records "
            "(needs_review); raise --budget-usd and run again to finish them"
        )
    for path, reason in summary.failures[:10]:
        out.print(f"  [red]failed[/red] {display_path(path)}: {escape(_printable(reason))}", highlight=False)
    if len(summary.failures) > 10:
        out.print(f"  ... see `visextract status --list --failed` for all {summary.failed} failures")
    if summary.interrupted:
        out.print("[yellow]interrupted[/yellow]: run the same command again to continue")


IncludeMissingOption = Annotated[
    bool, typer.Option("--include-missing", help="Also records whose every path is gone (deleted or moved files).")
]


@app.command()
@friendly_errors
def status(
    db: DbOption = None,
    list_records: Annotated[bool, typer.Option("--list", help="List every current record.")] = False,
    failed: Annotated[bool, typer.Option("--failed", help="With --list: only failed records.")] = False,
    schema: Annotated[str | None, typer.Option(help="Only this schema.")] = None,
    include_missing: IncludeMissingOption = False,
) -> None:
    """Counts of records by schema and status, recent runs, and optionally every record.

    `missing` counts records whose every path was gone when a later run went over its folder.

    Examples:

      visextract status

      visextract status --list --failed
    """
    store = _read_store(db)
    store.check_schema_name(schema)
    counts = store.status_counts()
    table = Table(title=f"records in {store.safe_url}")
    for column in ("schema", "ok", "needs_review", "failed", "missing", "total"):
        table.add_column(column, justify="left" if column == "schema" else "right")
    for name, by_status in sorted(counts.items()):
        if schema and name != schema:
            continue
        table.add_row(
            name,
            *(str(by_status.get(key, 0)) for key in ("ok", "needs_review", "failed", "missing")),
            str(sum(by_status.values())),
        )
    out.print(table)
    out.print(f"{store.image_count()} distinct images")
    for run_row in store.recent_runs(3):
        out.print(
            f"run {run_row.id} ({run_row.status}, {run_row.started_at:%Y-%m-%d %H:%M}): "
            f"{run_row.processed} processed, {run_row.skipped} skipped, {run_row.failed} failed, "
            f"{run_row.seconds:.1f} s",
            highlight=False,
        )
    if list_records:
        _print_record_table(store, schema, "failed" if failed else None, include_missing)


def _print_record_table(store: Any, schema: str | None, only_status: str | None, include_missing: bool) -> None:
    from visextract.store.export import export_dicts

    table = Table(show_lines=False)
    for column in ("path", "status", "top label", "faces", "text", "error"):
        table.add_column(column, overflow="fold")
    for record in export_dicts(store, schema, with_ids=include_missing, include_missing=include_missing):
        if only_status and record["status"] != only_status:
            continue
        tools = record["tools"]
        top = tools.get("classifier", [{}])[0].get("label", "") if tools.get("classifier") else ""
        faces = str(len(tools["faces"])) if "faces" in tools else ""
        text = " ".join(line["text"] for line in tools.get("ocr", []))
        style = {"ok": "green", "failed": "red", "needs_review": "yellow"}.get(record["status"], "")
        table.add_row(
            display_path(record["path"]),
            f"[{style}]{record['status']}[/{style}]" + (" [dim](missing)[/dim]" if record.get("missing") else ""),
            escape(_printable(top)),
            faces,
            escape(_printable((text[:40] + "…") if len(text) > 40 else text)),
            escape(_printable(record["error"] or "")),
        )
    out.print(table)


@app.command()
@friendly_errors
def show(
    path_or_sha: Annotated[str, typer.Argument(help="An image path, or its sha256 (or a prefix of 6+ characters).")],
    db: DbOption = None,
    schema: Annotated[str | None, typer.Option(help="Only the record of this schema.")] = None,
) -> None:
    """Show the record of the content a path holds now, as one JSON document: the export shape plus
    `paths` (every path holding that content). An image with records of several schemas prints a JSON
    array of them (or pick one with --schema).

    Examples:

      visextract show photos/cat.jpg

      visextract show 3f2a9c --schema vehicle
    """
    from visextract.errors import UsageError
    from visextract.store.export import records_for

    store = _read_store(db)
    store.check_schema_name(schema)
    records = records_for(store, path_or_sha, schema)
    if not records:
        raise UsageError(f"no record for {path_or_sha!r} in {store.safe_url}")
    document = records[0] if len(records) == 1 else records
    out.print_json(json.dumps(document, default=str, ensure_ascii=False))


@app.command()
@friendly_errors
def export(
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="jsonl, csv, parquet, or gold (reviewed records, for eval).")
    ] = "jsonl",
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Output file (default: stdout).")] = None,
    db: DbOption = None,
    schema: Annotated[str | None, typer.Option(help="Only records of this schema.")] = None,
    all_versions: Annotated[bool, typer.Option(help="Include superseded records (history).")] = False,
    include_missing: IncludeMissingOption = False,
) -> None:
    """Export current records, one per image and schema.

    Examples:

      visextract export --format jsonl -o records.jsonl

      visextract export --format csv --schema scene > scene.csv

      visextract export --format parquet -o records.parquet

      visextract export --format gold --schema scene -o gold.jsonl   # then: visextract eval gold.jsonl
    """
    from visextract.store.export import check_export_format, write_export

    check_export_format(fmt)
    store = _read_store(db)
    count = write_export(
        store, fmt, output, schema_name=schema, all_versions=all_versions, stdout=sys.stdout,
        include_missing=include_missing,
    )  # fmt: skip
    if output is not None:
        err.print(f"wrote {count} records to {output}")


FormatOption = Annotated[str, typer.Option("--format", "-f", help="table, or json (only JSON on stdout).")]


def _check_format(fmt: str) -> None:
    from visextract.errors import UsageError

    if fmt not in ("table", "json"):
        raise UsageError(f"--format {fmt!r}: use table or json")


@app.command()
@friendly_errors
def search(
    text: Annotated[str, typer.Argument(help="What to look for, in plain words.")],
    db: DbOption = None,
    k: Annotated[int, typer.Option("--k", help="How many results.")] = 10,
    schema: Annotated[str | None, typer.Option(help="Only records of this schema.")] = None,
    fmt: FormatOption = "table",
    include_missing: IncludeMissingOption = False,
) -> None:
    """Semantic search over what was extracted (labels, captions, text, fields). Offline.

    Examples:

      visextract search "a small rodent in a tree"

      visextract search "receipt from a bakery" --k 3 --format json
    """
    from visextract.query import search as search_records

    _check_format(fmt)
    hits = search_records(text, db=_settings(db).db, k=k, schema=schema, include_missing=include_missing)
    if fmt == "json":
        rows = [{"path": h.path, "sha256": h.sha256, "score": h.score, "snippet": h.snippet} for h in hits]
        sys.stdout.write(json.dumps(rows, ensure_ascii=False) + "\n")
        return
    table = Table()
    for column in ("score", "path", "why it matched"):
        table.add_column(column, overflow="fold")
    for hit in hits:
        table.add_row(f"{hit.score:.2f}", display_path(hit.path), escape(_printable(hit.snippet)))
    out.print(table)


@app.command("sql")
@friendly_errors
def sql_command(
    query: Annotated[str, typer.Argument(help="One SELECT (or WITH ... SELECT) statement.")],
    db: DbOption = None,
    fmt: FormatOption = "table",
    max_rows: Annotated[int, typer.Option(help="Return at most this many rows.")] = 1000,
    timeout: Annotated[float, typer.Option(help="Stop the query after this many seconds.")] = 10.0,
) -> None:
    """Run one read-only SQL query. Writes of any kind are refused and change nothing.

    Every schema has a typed view named after it (see `visextract schemas`).

    Examples:

      visextract sql "SELECT path, color, license FROM vehicle WHERE color = 'red'"

      visextract sql "SELECT status, count(*) AS n FROM record GROUP BY status" --format json
    """
    from visextract.query import sql as run_sql

    _check_format(fmt)
    result = run_sql(query, db=_settings(db).db, max_rows=max_rows, timeout_s=timeout)
    if fmt == "json":
        sys.stdout.write(json.dumps(result.rows, ensure_ascii=False, default=str) + "\n")
    else:
        table = Table()
        for column in result.columns:
            table.add_column(column, overflow="fold")
        for row in result.rows:
            table.add_row(*("" if row[c] is None else escape(str(row[c])) for c in result.columns))
        out.print(table)
    if result.truncated:
        err.print(f"(showing the first {max_rows} rows; use --max-rows for more)")


@app.command()
@friendly_errors
def ask(
    question: Annotated[str, typer.Argument(help="A question about the images, in plain language.")],
    db: DbOption = None,
    llm_model: Annotated[str | None, typer.Option(help="Chat model name (default gpt-4o-mini).")] = None,
) -> None:
    """Ask the query agent; it uses read-only SQL, search and a fresh look at images, and cites paths.

    Needs an OpenAI-compatible LLM (OPENAI_API_KEY, optionally OPENAI_BASE_URL).

    Example:

      visextract ask "which photos show a red car, and what are their plates?"
    """
    from visextract.query import ask as ask_agent

    answer = ask_agent(question, db=_settings(db).db, llm_model=llm_model)
    out.print(answer.text, highlight=False)


@app.command()
@friendly_errors
def chat(
    db: DbOption = None,
    llm_model: Annotated[str | None, typer.Option(help="Chat model name (default gpt-4o-mini).")] = None,
    thread: Annotated[
        str, typer.Option(help="Conversation name; history is kept per thread in the database.")
    ] = "chat",
) -> None:
    """Chat with the query agent. The conversation is kept in the database between sessions.

    Commands: /sql shows the last SQL query, /reset forgets the conversation, /exit quits.
    """
    import asyncio

    from visextract.query import ChatSession

    async def repl() -> None:
        async with ChatSession(_settings(db).db, llm_model=llm_model, thread_id=thread) as session:
            err.print(f"chatting about {session.store.safe_url} (thread {thread!r}; /sql, /reset, /exit)")
            while True:
                try:
                    line = (await asyncio.to_thread(input, "you> ")).strip()
                except EOFError:
                    break
                if not line:
                    continue
                if line in ("/exit", "/quit"):
                    break
                if line == "/reset":
                    await session.reset()
                    out.print("(conversation forgotten)")
                elif line == "/sql":
                    out.print(session.last_sql or "(no SQL run yet)", highlight=False)
                elif line.startswith("/"):
                    out.print("commands: /sql, /reset, /exit")
                else:
                    answer = await session.ask(line)
                    out.print(answer.text, highlight=False)

    asyncio.run(repl())


@app.command("eval")
@friendly_errors
def eval_command(
    gold: Annotated[Path, typer.Argument(help='GOLD.jsonl: one {"path" or "sha256": ..., "data": {...}} a line.')],
    db: DbOption = None,
    schema: Annotated[str | None, typer.Option(help="Schema to score (default: the database's only one).")] = None,
    against: Annotated[
        str | None, typer.Option(help="A second database URL, scored on the same gold, side by side.")
    ] = None,
    fmt: FormatOption = "table",
) -> None:
    """Score the extracted fields against gold labels: accuracy per field (lists also precision, recall
    and F1; strings CER; numbers MAE), per source, and how well `verified: false` flags the wrong ones.

    Examples:

      visextract eval gold.jsonl --db sqlite:///photos.db

      visextract eval gold.jsonl --db sqlite:///gpt-4o.db --against sqlite:///qwen.db

      visextract export --format gold -o gold.jsonl && visextract eval gold.jsonl --format json
    """
    from visextract.evaluation import evaluate
    from visextract.evaluation.tables import evaluation_tables

    _check_format(fmt)
    result = evaluate(gold, db=_settings(db).db, schema=schema, against=against)
    if fmt == "json":
        sys.stdout.write(result.model_dump_json() + "\n")
        return
    for renderable in evaluation_tables(result):
        out.print(renderable, highlight=False)


@app.command("mcp")
@friendly_errors
def mcp_command(
    db: DbOption = None,
    http: Annotated[bool, typer.Option("--http", help="Serve streamable HTTP at /mcp instead of stdio.")] = False,
    host: Annotated[str, typer.Option(help="With --http: address to bind; off loopback a token is required.")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="With --http: port to listen on.")] = 8766,
    token: Annotated[
        str | None, typer.Option(help="With --http: require 'Authorization: Bearer T' (generated off loopback).")
    ] = None,
    max_rows: Annotated[int, typer.Option(help="run_sql returns at most this many rows.")] = 200,
    timeout: Annotated[float, typer.Option(help="run_sql stops a query after this many seconds.")] = 10.0,
) -> None:
    """Serve the results to MCP chat clients (Claude Desktop, Cursor, VS Code...) over stdio.

    Tools: list_schemas, search_images, run_sql (read-only), show_record, get_image.
    An MCP client's config entry:

      {"command": "visextract",
       "args": ["mcp", "--db", "sqlite:////abs/path/visextract.db"]}

    Examples:

      visextract mcp --db sqlite:////home/me/photos/visextract.db

      visextract mcp --http                   (at http://127.0.0.1:8766/mcp)

      visextract mcp --http --host 0.0.0.0    (prints the token clients send)
    """
    from visextract.errors import UsageError
    from visextract.http_access import access_token

    if not http and (host != "127.0.0.1" or token is not None):
        raise UsageError("--host and --token apply to --http only (stdio needs neither)")
    if max_rows < 1 or timeout <= 0:
        raise UsageError("--max-rows must be 1 or more and --timeout positive")
    required = access_token(host, token) if http else None
    store = _read_store(db)  # a mistyped --db fails here, before the MCP SDK loads

    from visextract.mcp import build_server, serve_http, serve_stdio

    server = build_server(store, max_rows=max_rows, timeout_s=timeout)
    if not http:
        serve_stdio(server)
        return
    err.print(f"MCP server at http://{host if ':' not in host else f'[{host}]'}:{port}/mcp", highlight=False)
    if required:
        err.print(f"requests need the header: Authorization: Bearer {required}", highlight=False)
    serve_http(server, host, port, required)


@app.command()
@friendly_errors
def serve(
    db: DbOption = None,
    host: Annotated[
        str, typer.Option(help="Address to listen on; anything but loopback needs a token (one is generated).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8765,
    token: Annotated[
        str | None, typer.Option(help="Require this token (Authorization: Bearer T, or open /?token=T once).")
    ] = None,
) -> None:
    """The review workbench in a browser: gallery, each record on its image, the review queue, the chat.

    Examples:

      visextract serve                               # http://127.0.0.1:8765/

      visextract serve --db sqlite:///photos.db --port 9000

      visextract serve --host 0.0.0.0                # other machines too: prints a URL with a token
    """
    from visextract.query import open_store
    from visextract.web.app import WebConfig, check_port_free
    from visextract.web.app import serve as run_server

    config = WebConfig(db=_settings(db).db, host=host, port=port, token=token).with_token()
    store = open_store(config.db)  # no database at that URL: one line now, not an error page later
    check_port_free(config.host, config.port)
    out.print(f"serving {store.safe_url} at {config.url}  (Ctrl-C stops)", highlight=False, soft_wrap=True)
    run_server(config)


@app.command()
@friendly_errors
def schemas() -> None:
    """List the built-in record schemas and their fields."""
    from visextract.schemas.registry import BUILT_IN_SCHEMAS

    for schema in BUILT_IN_SCHEMAS.values():
        table = Table(title=f"{schema.name} (version {schema.version}): {schema.description}", title_justify="left")
        table.add_column("field")
        table.add_column("type")
        table.add_column("description")
        properties = schema.json_schema.get("properties", {})
        for name, field in schema.model.model_fields.items():
            table.add_row(name, _type_text(properties.get(name, {})), field.description or "")
        out.print(table)
        out.print(f"default tools: {', '.join(schema.default_tools)}\n")


def _type_text(prop: dict[str, Any]) -> str:
    if "anyOf" in prop:
        return " | ".join(_type_text(p) for p in prop["anyOf"])
    if prop.get("type") == "array":
        return f"list[{_type_text(prop.get('items', {}))}]"
    return str(prop.get("type", prop.get("$ref", "any")).split("/")[-1])


@app.command()
@friendly_errors
def models(
    model: Annotated[
        list[str] | None,
        typer.Option("--model", help="Check a swapped model: TOOL=HF_ID_OR_PATH (repeatable)."),
    ] = None,
) -> None:
    """List every tool, the model it uses, and whether that model is available on this machine."""
    from visextract.tools.base import ToolOptions
    from visextract.tools.registry import TOOL_SPECS, check_model_overrides

    options = ToolOptions(models=_parse_models(model))
    check_model_overrides(options.models)
    table = Table()
    for column in ("tool", "model", "available here", "output"):
        table.add_column(column, overflow="fold")
    for name, spec in TOOL_SPECS.items():
        tool = spec.build(options)
        reason = tool.missing_reason(may_download=False)
        available = "[green]yes[/green]" if reason is None else f"[red]no[/red]: {reason}"
        table.add_row(name, tool.model_id, available, spec.description)
    out.print(table)


def hoist_verbose(argv: list[str]) -> list[str]:
    """`-v`/`--verbose` work anywhere before `--`: moved in front of the command, where Typer reads them."""
    end = argv.index("--") if "--" in argv else len(argv)
    flags = [arg for arg in argv[:end] if arg in ("-v", "--verbose")]
    rest = [arg for arg in argv[:end] if arg not in ("-v", "--verbose")]
    return flags + rest + argv[end:]


def main() -> None:
    try:
        app(args=hoist_verbose(sys.argv[1:]), prog_name="visextract")
    except BrokenPipeError:  # e.g. `visextract export | head -n 1`
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(0)


if __name__ == "__main__":
    main()
