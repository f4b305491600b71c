"""Turn what a user submits (pasted text, .txt, .csv, .jsonl, a JSON list) into ``(text, title)`` pairs.

Pure functions; every problem raises :class:`CorpusError` with a one-line reason fit for the user.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Sequence

Doc = tuple[str, str | None]
FORMATS = ("txt", "csv", "jsonl")
# What ends a line: LF, CRLF or CR, as text editors and universal newlines read them. Not str.splitlines's other
# breaks (form feed, U+2028, ...), which are text inside a line and, in JSON, inside a string.
LINE_BREAK = re.compile(r"\r\n?|\n")

csv.field_size_limit(64 * 1024 * 1024)


class CorpusError(ValueError):
    """The submitted corpus cannot be read; the message says why in one line."""


def decode(data: bytes) -> str:
    try:
        return without_nul(data.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise CorpusError(f"the file is not UTF-8 text (bad byte at offset {exc.start})") from None


def format_of(filename: str) -> str:
    suffix = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    if suffix in ("txt", "text"):
        return "txt"
    if suffix in ("csv", "jsonl", "ndjson"):
        return "jsonl" if suffix == "ndjson" else suffix
    raise CorpusError(f"unsupported file type '.{suffix}': use .txt (one document per line), .csv or .jsonl")


def without_nul(text: str) -> str:
    """``text`` without NUL characters, which PostgreSQL text columns cannot hold."""
    return text.replace("\x00", "")


def unicode_text(text: str, where: str) -> str:
    """``text`` without NUL characters, or a CorpusError if it holds a lone surrogate: JSON can escape one
    (``"\\ud800"``), but it is no Unicode text and no database stores it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise CorpusError(f"{where} holds a lone surrogate (\\u{ord(text[exc.start]):04x}), which is not Unicode "
                          "text") from None
    return without_nul(text)


def parse_lines(text: str) -> list[Doc]:
    """One document per non-blank line."""
    return [(line.strip(), None) for line in LINE_BREAK.split(text) if line.strip()]


def csv_columns(text: str) -> list[str]:
    # newline="" here and below: the csv module reads line breaks itself, in quoted fields too.
    try:
        header = next(csv.reader(io.StringIO(text, newline="")), None)
    except csv.Error as exc:
        raise CorpusError(f"the CSV file's header cannot be read: {exc}") from None
    if not header:
        raise CorpusError("the CSV file is empty")
    return [h.strip() for h in header]


def parse_csv(text: str, text_column: str | None = None, title_column: str | None = None) -> list[Doc]:
    """Rows of a CSV file with a header; rows whose text cell is blank are skipped."""
    columns = csv_columns(text)
    text_column = (text_column or "").strip() or _guess_text_column(columns)
    if text_column not in columns:
        raise CorpusError(f"the CSV file has no column '{text_column}' (columns: {', '.join(columns)})")
    title_column = (title_column or "").strip() or ("title" if "title" in columns else None)
    if title_column and title_column not in columns:
        raise CorpusError(f"the CSV file has no column '{title_column}' (columns: {', '.join(columns)})")
    reader = csv.DictReader(io.StringIO(text, newline=""), fieldnames=columns)
    next(reader)  # the header
    docs: list[Doc] = []
    try:
        for row in reader:
            body = (row.get(text_column) or "").strip()
            if body:
                title = (row.get(title_column) or "").strip() if title_column else ""
                docs.append((body, title or None))
    except csv.Error as exc:
        raise CorpusError(f"line {reader.line_num} of the CSV file cannot be read: {exc}") from None
    return docs


def _guess_text_column(columns: Sequence[str]) -> str:
    for candidate in ("text", "document", "content", "body"):
        if candidate in columns:
            return candidate
    if len(columns) == 1:
        return columns[0]
    raise CorpusError(f"pick the text column of the CSV file (columns: {', '.join(columns)})")


def parse_jsonl(text: str) -> list[Doc]:
    """One JSON object per line with ``text`` and an optional ``title``; blank lines are skipped."""
    docs: list[Doc] = []
    for number, line in enumerate(LINE_BREAK.split(text), start=1):
        if not line.strip():
            continue
        where = f"line {number} of the JSONL file"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CorpusError(f"{where} is not valid JSON ({exc.msg})") from None
        except ValueError:  # an integer of more digits than Python converts (sys.get_int_max_str_digits)
            raise CorpusError(f"{where} holds a number too long to read") from None
        except RecursionError:
            raise CorpusError(f"{where} is nested too deeply") from None
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise CorpusError(f'{where} has no string field "text"')
        body = unicode_text(record["text"], where).strip()  # JSON escapes NUL (\u0000) past ``decode``
        if body:
            title = record.get("title")
            title = unicode_text(str(title), where).strip() if title is not None else ""
            docs.append((body, title or None))
    return docs


def parse_file(
    data: bytes, filename: str, text_column: str | None = None, title_column: str | None = None
) -> list[Doc]:
    kind = format_of(filename)
    text = decode(data)
    if kind == "txt":
        return parse_lines(text)
    if kind == "csv":
        return parse_csv(text, text_column, title_column)
    return parse_jsonl(text)


def from_json_items(items: Sequence[object]) -> list[Doc]:
    """The ``documents`` list of the JSON API: strings or ``{"text", "title"?}``; blanks are an error."""
    docs: list[Doc] = []
    for i, item in enumerate(items):
        text, title = (item, None) if isinstance(item, str) else (getattr(item, "text", None), getattr(item, "title", None))
        text = unicode_text(text, f"documents[{i}]") if isinstance(text, str) else text
        if not isinstance(text, str) or not text.strip():
            raise CorpusError(f"documents[{i}] is empty")
        docs.append((text.strip(), unicode_text(title or "", f"documents[{i}].title").strip() or None))
    return docs


def check_size(docs: Sequence[Doc], minimum: int, maximum: int) -> None:
    if len(docs) < minimum:
        raise CorpusError(f"a job needs at least {minimum} non-empty documents, got {len(docs)}")
    if len(docs) > maximum:
        raise CorpusError(f"a job may hold at most {maximum} documents, got {len(docs)}")
