"""Untrusted text (documents, users' labels, what an LLM answered) made harmless where it goes: one plain line
without control characters, invisible characters or markup, and spreadsheet cells that cannot run as formulas.

Pages, the map and the SVG escape everything anyway; these functions make the text itself plain, so that a
label reads the same in a terminal, a CSV or a JSON consumer that does not escape."""

from __future__ import annotations

import html
import re
import unicodedata

# Terminal escape sequences: CSI (ESC [ ... final byte, or its one-byte form 0x9b), OSC (ESC ] ... BEL or ESC \),
# and the two-byte ESC sequences. Removed whole, so that no "[31m" is left behind.
_ANSI = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|\x1b[ -~]?"
)
# Not visible text: controls (Cc), format characters such as zero-width spaces and joiners, bidi overrides and
# isolates, the BOM (Cf), surrogates (Cs), private use (Co) and unassigned code points (Cn).
_INVISIBLE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})

# Elements whose content is code, not words: dropped with it.
_CODE_ELEMENT = re.compile(r"<(script|style)\b.*?(?:</\1\s*>|$)", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"</?[a-z!?][^<>]*>?", re.IGNORECASE)  # as a browser reads one; an unclosed one at the end too
_MARKDOWN_LINK = re.compile(r"!?\[([^\]]*)\]\((?:[^()]|\([^()]*\))*\)")  # its text; the target may hold (...)
_URL = re.compile(r"(?<![a-z])(?:javascript|vbscript|livescript|data|file|https?|ftp)\s*:(?=\S)\S*", re.IGNORECASE)

# A spreadsheet runs a cell that starts with one of these as a formula (OWASP's list and the full-width forms some
# spreadsheets accept too), also after blanks or invisible characters that a trimming import drops.
FORMULA_STARTS = frozenset("=+-@\t\r＝＋－＠")


def one_line(text: str) -> str:
    """``text`` on one line: terminal escape sequences and invisible characters removed, every run of whitespace
    (line breaks, tabs, no-break and other spaces) one plain space, none at either end."""
    text = _ANSI.sub("", text)
    visible = "".join(
        " " if ch.isspace() else ch for ch in text if ch.isspace() or unicodedata.category(ch) not in _INVISIBLE
    )
    return " ".join(visible.split())


def strip_markup(text: str) -> str:
    """``text`` without HTML (entities decoded and invisible characters dropped first, so that neither hides a
    tag or a URL; tags dropped with their attributes, scripts and styles with their content, any ``<`` or ``>``
    left over), markdown links and code marks, and URLs: ``<b>Cats</b> & **dogs**`` gives ``Cats & dogs``."""
    text = one_line(html.unescape(text))
    text = _CODE_ELEMENT.sub(" ", text)
    text = _TAG.sub(" ", text)
    text = text.replace("<", " ").replace(">", " ")
    text = _MARKDOWN_LINK.sub(r"\1", text)
    text = text.replace("**", "").replace("`", "")
    return _URL.sub(" ", text)


def plain_line(text: str) -> str:
    """``text`` as plain words on one line: ``strip_markup`` then ``one_line``."""
    return one_line(strip_markup(text))


def spreadsheet_safe(cell):
    """A text cell that a spreadsheet would run as a formula, with a leading apostrophe (shown as text); other
    cells as they are."""
    return "'" + cell if isinstance(cell, str) and _starts_formula(cell) else cell


def _starts_formula(text: str) -> bool:
    """True if the first character that is neither blank nor invisible (a tab or carriage return counts) starts
    a formula."""
    for ch in text:
        if ch in FORMULA_STARTS:
            return True
        if not (ch.isspace() or unicodedata.category(ch) in _INVISIBLE):
            return False
    return False
