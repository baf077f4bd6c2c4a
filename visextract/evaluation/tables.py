"""Rich renderings of evaluation results for the terminal (`visextract eval` without --format json)."""

from __future__ import annotations

from collections.abc import Iterator

from rich.markup import escape
from rich.table import Table
from rich.text import Text

from visextract.evaluation.report import METRICS, EvaluationComparison, EvaluationReport, Scores

_COLUMNS = ("accuracy", "precision", "recall", "f1", "cer", "mae")
_LOWER_IS_BETTER = frozenset({"cer", "mae"})


def evaluation_tables(result: EvaluationReport | EvaluationComparison) -> Iterator[Table | Text | str]:
    """What `visextract eval` prints: the scores table, the review-flag quality, the unmatched entries."""
    if isinstance(result, EvaluationComparison):
        yield _comparison_table(result)
        for name, report in (("db", result.db), ("against", result.against)):
            yield from _unmatched(report, f"{name}: ")
        return
    yield _report_table(result)
    yield _review_flag_line(result)
    yield from _unmatched(result, "")


def _title(report: EvaluationReport) -> str:
    images = report.images
    return f"{report.schema_name}: {images.matched} of {images.gold} gold images matched in {report.db}"


def _report_table(report: EvaluationReport) -> Table:
    table = Table(title=escape(_title(report)), title_justify="left")
    table.add_column("field / source")
    table.add_column("type")
    table.add_column("n", justify="right")
    for column in _COLUMNS:
        table.add_column(column, justify="right")
    rows = []
    for name, scores in report.fields.items():
        rows.append((escape(name), scores.type, _cells(scores, scores.type), "bold"))
        if len(scores.by_source) > 1 or set(scores.by_source) - {"none"}:
            for source, share in scores.by_source.items():
                rows.append((f"  {escape(source)}", "", _cells(share, scores.type), "dim"))
    for label, kind, cells, style in rows:
        table.add_row(label, kind, *cells, style=style)
    if any("-" in cells for _, _, cells, _ in rows):
        table.caption = "-: nothing to divide by (e.g. no gold characters for CER)"
    return table


def _cells(scores: Scores, kind: str) -> list[str]:
    applicable = ("accuracy", *METRICS.get(kind, ()))
    return [str(scores.n)] + [_number(getattr(scores, c)) if c in applicable else "" for c in _COLUMNS]


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _review_flag_line(report: EvaluationReport) -> Text:
    flag = report.review_flag
    return Text(
        f"review flag (verified: false): precision {_number(flag.precision)} "
        f"({flag.flagged_wrong} of {flag.flagged} flagged fields were wrong), "
        f"recall {_number(flag.recall)} ({flag.flagged_wrong} of {flag.wrong} wrong fields were flagged)"
    )


def _unmatched(report: EvaluationReport, prefix: str) -> Iterator[Text]:
    images = report.images
    if images.unmatched:
        count = len(images.unmatched)
        yield Text(f"{prefix}{count} gold {'entry' if count == 1 else 'entries'} matched no record:", style="yellow")
    for key, reason in zip(images.unmatched, images.unmatched_reasons, strict=False):
        yield Text(f"  {key}: {reason}")


def _comparison_table(result: EvaluationComparison) -> Table:
    db, against, difference = result.db, result.against, result.difference
    table = Table(
        title=escape(f"{db.schema_name}: {db.images.gold} gold images; db = {db.db}, against = {against.db}"),
        title_justify="left",
    )
    for column, justify in (("field", "left"), ("metric", "left"), ("db", "right"), ("against", "right")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    table.add_column("difference", justify="right")
    table.add_row("images", "matched", str(db.images.matched), str(against.images.matched),
                  _signed(difference.images["matched"], "n", digits=0))  # fmt: skip
    table.add_section()
    for name, mine in db.fields.items():
        theirs, change = against.fields[name], difference.fields[name]
        for position, metric in enumerate(("n", "accuracy", *METRICS.get(mine.type, ()))):
            if metric == "n":
                cells = [str(mine.n), str(theirs.n), _signed(change.n, metric, digits=0)]
            else:
                values = (getattr(mine, metric), getattr(theirs, metric), getattr(change, metric))
                cells = [_number(values[0]), _number(values[1]), _signed(values[2], metric)]
            table.add_row(escape(name) if position == 0 else "", metric, *cells)
        table.add_section()
    for metric in ("precision", "recall"):
        values = (getattr(db.review_flag, metric), getattr(against.review_flag, metric))
        table.add_row("review flag" if metric == "precision" else "", metric, *map(_number, values),
                      _signed(difference.review_flag[metric], metric))  # fmt: skip
    table.caption = "difference = against - db; green: against is better"
    return table


def _signed(value: float | None, metric: str, digits: int = 3) -> str:
    if value is None:
        return "-"
    text = f"{value:+.{digits}f}"
    if value == 0 or metric == "n":
        return text
    better = (value < 0) if metric in _LOWER_IS_BETTER else (value > 0)
    return f"[green]{text}[/green]" if better else f"[red]{text}[/red]"
