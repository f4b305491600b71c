"""Turn what a user submits (pasted text, .txt, .csv, .jsonl, a JSON list) into ``(text, title)`` pairs.

Pure functions; every problem raises :class:`CorpusError` with a one-line reason fit for the user. A file is read
as a stream: :func:`read_file` decodes its bytes a megabyte at a time and yields documents as it goes, so a
corpus of any size costs the memory of one chunk, not of the file (plus its decoded text, lines and copies).
The parsers of strings (:func:`parse_lines`, :func:`parse_csv`, :func:`parse_jsonl`, :func:`parse_file`) are the
same readers over one chunk.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import BinaryIO

Doc = tuple[str, str | None]
FORMATS = ("txt", "csv", "jsonl")
# What ends a line: LF, CRLF or CR, as text editors and universal newlines read them. Not str.splitlines's other
# breaks (form feed, U+2028, ...), which are text inside a line and, in JSON, inside a string.
LINE_BREAK = re.compile(r"\r\n?|\n")
_SPLIT = re.compile(r"(\r\n|\r|\n)")  # LINE_BREAK, kept in the pieces of a split
READ_BYTES = 1 << 20  # bytes of a file decoded at a time

csv.field_size_limit(64 * 1024 * 1024)


class CorpusError(ValueError):
    """The submitted corpus cannot be read; the message says why in one line."""


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


# -- bytes to lines ----------------------------------------------------------------------------------------


def decoded_chunks(stream: BinaryIO, chunk_bytes: int = READ_BYTES) -> Iterator[str]:
    """The text of a UTF-8 byte stream, ``chunk_bytes`` at a time: a leading BOM and every NUL dropped. A chunk
    never ends in a CR whose LF may follow, so that a CRLF is never split between two chunks (NUL characters
    between the two are dropped first, as from the whole text). A bad byte is a CorpusError naming its offset
    in the file."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    data = stream.read(chunk_bytes)
    while 0 < len(data) < len(codecs.BOM_UTF8) and (more := stream.read(chunk_bytes)):
        data += more  # a BOM is three bytes; a stream may hand over fewer at first
    offset = 0  # of ``data``'s first byte in the file
    if data.startswith(codecs.BOM_UTF8):
        data, offset = data[len(codecs.BOM_UTF8):] or stream.read(chunk_bytes), len(codecs.BOM_UTF8)
    held = ""  # a CR at the end of the last chunk
    while True:
        final = not data
        pending = len(decoder.getstate()[0])  # bytes of a character the last chunk began, decoded with this one
        try:
            text = held + without_nul(decoder.decode(data, final))
        except UnicodeDecodeError as exc:
            at = offset - pending + exc.start
            raise CorpusError(f"the file is not UTF-8 text (bad byte at offset {at})") from None
        offset += len(data)
        if final:
            if text:
                yield text
            return
        held = "\r" if text.endswith("\r") else ""
        if held:
            text = text[:-1]
        if text:
            yield text
        data = stream.read(chunk_bytes)


def split_lines(chunks: Iterable[str]) -> Iterator[str]:
    """The lines of text given in chunks, each with its line break (the last line may have none), as
    ``io.StringIO(text, newline="")`` reads them; a chunk must not end in a CR whose LF opens the next."""
    carry: list[str] = []  # the start of a line the chunks so far have not ended
    for chunk in chunks:
        pieces = _SPLIT.split(chunk)  # line, break, line, break, ..., the rest
        rest = pieces.pop()
        if pieces and carry:
            pieces[0] = "".join(carry) + pieces[0]
            carry.clear()
        for i in range(0, len(pieces), 2):
            yield pieces[i] + pieces[i + 1]
        if rest:
            carry.append(rest)
    if carry:
        yield "".join(carry)


def read_lines(stream: BinaryIO, chunk_bytes: int = READ_BYTES) -> Iterator[str]:
    """The lines of a UTF-8 file, as :func:`split_lines` gives them (decoded as :func:`decoded_chunks`)."""
    return split_lines(decoded_chunks(stream, chunk_bytes))


# -- lines to documents ------------------------------------------------------------------------------------


def line_docs(lines: Iterable[str]) -> Iterator[Doc]:
    """One document per non-blank line."""
    for line in lines:
        if body := line.strip():
            yield body, None


def csv_docs(lines: Iterable[str], text_column: str | None = None, title_column: str | None = None) -> Iterator[Doc]:
    """Rows of a CSV file with a header; rows whose text cell is blank are skipped. ``lines`` keep their line
    breaks: the csv module reads them itself, in quoted fields too. Raises for the header and the columns before
    the first row is read."""
    reader = csv.reader(lines)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise CorpusError(f"the CSV file's header cannot be read: {exc}") from None
    if not header:
        raise CorpusError("the CSV file is empty")
    columns = [h.strip() for h in header]
    text_column = (text_column or "").strip() or _guess_text_column(columns)
    if text_column not in columns:
        raise CorpusError(f"the CSV file has no column '{text_column}' (columns: {', '.join(columns)})")
    title_column = (title_column or "").strip() or ("title" if "title" in columns else None)
    if title_column and title_column not in columns:
        raise CorpusError(f"the CSV file has no column '{title_column}' (columns: {', '.join(columns)})")
    return _csv_rows(reader, _last_index(columns, text_column), _last_index(columns, title_column))


def _last_index(columns: list[str], name: str | None) -> int | None:
    """Where a row holds column ``name``: of repeated names the last, as csv.DictReader reads them."""
    return None if name is None else len(columns) - 1 - columns[::-1].index(name)


def _csv_rows(reader, text_at: int, title_at: int | None) -> Iterator[Doc]:
    try:
        for row in reader:
            body = (row[text_at] if text_at < len(row) else "").strip()  # a short row lacks its last cells
            if body:
                title = (row[title_at] if title_at is not None and title_at < len(row) else "").strip()
                yield body, title or None
    except csv.Error as exc:
        raise CorpusError(f"line {reader.line_num} of the CSV file cannot be read: {exc}") from None


def _guess_text_column(columns: Sequence[str]) -> str:
    for candidate in ("text", "document", "content", "body"):
        if candidate in columns:
            return candidate
    if len(columns) == 1:
        return columns[0]
    raise CorpusError(f"pick the text column of the CSV file (columns: {', '.join(columns)})")


def jsonl_docs(lines: Iterable[str]) -> Iterator[Doc]:
    """One JSON object per line with ``text`` and an optional ``title``; blank lines are skipped."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        line = line.rstrip("\r\n")  # its break: only the line goes to the JSON parser (and into its messages)
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
        body = unicode_text(record["text"], where).strip()  # JSON escapes NUL (\u0000) past the decoder
        if body:
            title = record.get("title")
            title = unicode_text(str(title), where).strip() if title is not None else ""
            yield body, title or None


def read_file(
    stream: BinaryIO, filename: str, text_column: str | None = None, title_column: str | None = None
) -> Iterator[Doc]:
    """The documents of an uploaded file, read from ``stream`` as they are iterated; the format comes from the
    file's name (a CorpusError at once for an unknown one, before anything is read)."""
    kind = format_of(filename)
    lines = read_lines(stream)
    if kind == "txt":
        return line_docs(lines)
    if kind == "csv":
        return _lazy(csv_docs, lines, text_column, title_column)
    return jsonl_docs(lines)


def _lazy(make, *args) -> Iterator[Doc]:
    """``make(*args)``'s documents, but nothing read (not even a CSV header) until the first is asked for."""
    yield from make(*args)


def parse_lines(text: str) -> list[Doc]:
    return list(line_docs(split_lines([text])))


def parse_csv(text: str, text_column: str | None = None, title_column: str | None = None) -> list[Doc]:
    return list(csv_docs(split_lines([text]), text_column, title_column))


def parse_jsonl(text: str) -> list[Doc]:
    return list(jsonl_docs(split_lines([text])))


def parse_file(
    data: bytes, filename: str, text_column: str | None = None, title_column: str | None = None
) -> list[Doc]:
    """:func:`read_file` over bytes in memory."""
    return list(read_file(io.BytesIO(data), filename, text_column, title_column))


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


# -- how many ----------------------------------------------------------------------------------------------


def at_most(docs: Iterable[Doc], maximum: int) -> Iterator[Doc]:
    """``docs`` as they come, but a CorpusError at the first past ``maximum``: the rest is never read."""
    for number, doc in enumerate(docs, start=1):
        if number > maximum:
            raise CorpusError(f"a job may hold at most {maximum} documents, got more (stopped at document "
                              f"{maximum + 1})")
        yield doc


def check_count(count: int, minimum: int) -> None:
    if count < minimum:
        raise CorpusError(f"a job needs at least {minimum} non-empty documents, got {count}")


def check_size(docs: Sequence[Doc], minimum: int, maximum: int) -> None:
    check_count(len(docs), minimum)
    if len(docs) > maximum:
        raise CorpusError(f"a job may hold at most {maximum} documents, got {len(docs)}")
