"""The label prompt of the recipe (system prompt, one worked example, the main prompt) and the label cleaner.

The model's own chat template renders them, so the same messages serve Llama-2 and Qwen alike.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from shared.sanitize import one_line, plain_line

SYSTEM_PROMPT = "You are a helpful, respectful and honest assistant for labeling topics."

EXAMPLE_PROMPT = """I have a topic that contains the following documents:
- Traditional diets in most cultures were primarily plant-based with a little meat on top, but with the rise of industrial style meat production and factory farming, meat has become a staple food.
- Meat, but especially beef, is the word food in terms of emissions.
- Eating meat doesn't make you a bad person, not eating meat doesn't make you a good one.

The topic is described by the following keywords: 'meat, beef, eat, eating, emissions, steak, food, health, processed, chicken'.

Based on the information about the topic above, please create a short label of this topic. Make sure you to only return the label and nothing more."""

EXAMPLE_ANSWER = "Environmental impacts of eating meat"

MAIN_PROMPT = """I have a topic that contains the following documents:
[DOCUMENTS]

The topic is described by the following keywords: '[KEYWORDS]'.

Based on the information about the topic above, please create a short label of this topic. Make sure you to only return the label and nothing more."""

THEME_PROMPT = """I have a broad theme that groups the following topics, each given by its label and keywords:
[DOCUMENTS]

The theme is described by the following keywords: '[KEYWORDS]'.

Based on the information about the theme above, please create a short label of this broad theme, one that covers all of its topics and is broader than any of their labels. Make sure you to only return the label and nothing more."""

DOMAIN_PROMPT = """I have a broad domain that groups the following themes, each given by its label and a few of its topics:
[DOCUMENTS]

The domain is described by the following keywords: '[KEYWORDS]'.

Based on the information about the domain above, please create a short label of this domain, one that covers all of its themes and is broader than any of their labels. Make sure you to only return the label and nothing more."""

TAKEN_NOTE = (
    "These labels are already used for other topics: [TAKEN]. "
    "Give this topic a short label that sets it apart from them."
)

# A job's label_language: the last line of every topic and theme prompt.
LANGUAGE_NOTE = "Write the label in [LANGUAGE], whatever language the documents are in."

MAX_LABEL_WORDS = 10
MAX_LABEL_CHARS = 100  # ten words of ten letters; a longer answer is cut at a word


def truncate_words(text: str, max_words: int) -> str:
    words = text.split()
    return " ".join(words[:max_words]) + (" ..." if len(words) > max_words else "")


def fill(template: str, documents: Sequence[str], keywords: Sequence[str]) -> str:
    """The template with its tags filled in one pass (a document that contains "[KEYWORDS]" stays as it is).

    Each document is one line of the list (``one_line``: no line breaks, terminal escapes or invisible
    characters), so that none can end the list and pose as the prompt's own text."""
    return _filled(template, {"[DOCUMENTS]": _bullets(documents), "[KEYWORDS]": ", ".join(keywords)})


def _bullets(documents: Sequence[str]) -> str:
    """One ``- `` line per document (``one_line``)."""
    return "\n".join(f"- {one_line(doc)}" for doc in documents)


def _filled(template: str, values: dict[str, str]) -> str:
    """``template`` with each tag of ``values`` replaced in one pass (a value holding a tag stays as it is)."""
    return re.sub("|".join(re.escape(tag) for tag in values), lambda match: values[match.group(0)], template)


def build_messages(
    documents: Sequence[str],
    keywords: Sequence[str],
    template: str = MAIN_PROMPT,
    taken: Sequence[str] = (),
    note: str = "",
    language: str | None = None,
) -> list[dict[str, str]]:
    """Chat messages for one topic: system, worked example (user + assistant), then this topic.

    ``documents`` arrive already cut to their budget; ``taken`` lists labels other topics already have;
    ``note`` (e.g. ``contrast_note``) is added at the end, and then ``language`` (a language's name), the one
    the label must be written in.
    """
    main = fill(template, documents, keywords)
    if taken:
        main += "\n\n" + TAKEN_NOTE.replace("[TAKEN]", ", ".join(f"'{label}'" for label in taken))
    if note:
        main += "\n\n" + note
    if language:
        main += "\n\n" + LANGUAGE_NOTE.replace("[LANGUAGE]", language)
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": EXAMPLE_PROMPT},
        {"role": "assistant", "content": EXAMPLE_ANSWER},
        {"role": "user", "content": main},
    ]


def validate_template(template: str) -> str | None:
    """Why a user's prompt template cannot be used, or None if it can."""
    if "[KEYWORDS]" not in template and "[DOCUMENTS]" not in template:
        return "the prompt must contain [KEYWORDS] or [DOCUMENTS], where the topic's keywords or documents go"
    if len(template) > 4000:
        return "the prompt may be at most 4000 characters"
    return None


_PREFIX = re.compile(
    r"^\s*(?:[-*#>]+\s*|\d+[.)]\s+)?(?:\*\*)?(?:short\s+|topic\s+|suggested\s+|possible\s+)*(?:label|topic|title|answer)"
    r"(?:\s+for\s+this\s+topic)?\s*(?:\*\*)?\s*[:\-–]\s*",
    re.IGNORECASE,
)
_PREAMBLE = re.compile(
    r"^\s*(?:sure|certainly|of course|okay|ok|absolutely|great|here(?:'s|\s+is|\s+are)|based on|the (?:short )?label|"
    r"i would|i'd|this topic|a (?:short|possible) label)\b",
    re.IGNORECASE,
)
_LEADING = re.compile(r"^\s*(?:[-*#>]+\s*|\d+[.)]\s+)")
_QUOTES = "\"'`“”‘’*_ "


def clean_label(raw: str) -> str | None:
    """A short label out of what an LLM answered, or None if nothing usable is in it.

    Takes the first line that is not a preamble ("Sure, here is a short label:"), drops "Label:" and
    similar prefixes, list markers, markdown and quotes and a final period, and keeps at most ten words and
    MAX_LABEL_CHARS characters. "Sure! The label is: Qt Framework" gives "Qt Framework".
    The answer is untrusted (a document may have told the model what to print): each line is made plain text
    first (``plain_line``: no markup, URLs, terminal escapes, control or invisible characters), so
    "<script>alert(1)</script>" alone gives None and "C++ templates & generics" stays as it is.
    """
    for line in raw.splitlines():
        line = plain_line(line)
        if not line:
            continue
        if _PREAMBLE.match(line):
            head, sep, tail = line.partition(":")
            if not sep or not tail.strip():
                continue  # a preamble line alone: the label follows on a later line
            line = tail
        line = _PREFIX.sub("", line)
        line = _LEADING.sub("", line).strip().strip(_QUOTES + ".").strip()
        if line and not line.startswith("="):  # a spreadsheet formula is no label
            return _cut(" ".join(line.split()[:MAX_LABEL_WORDS]), MAX_LABEL_CHARS)
    return None


def _cut(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, at its last space before the limit when it has one."""
    if len(text) <= limit:
        return text
    head = text[: limit + 1]
    return (head.rsplit(" ", 1)[0] if " " in head else text[:limit]).rstrip(" ,;:")


def normalized(label: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", label.lower()).split())


def with_keyword(label: str, keywords: Sequence[str], taken: set[str]) -> str:
    """``label`` made distinct by the topic's most distinctive keyword it does not already contain."""
    words = set(normalized(label).split())
    for keyword in keywords:
        candidate = f"{label} ({keyword})"
        if keyword.lower() not in words and normalized(candidate) not in taken:
            return candidate
    return label


def keyword_label(keywords: Sequence[str], n: int = 4) -> str:
    """The fallback label when the LLM is off or gave nothing usable."""
    return ", ".join(keywords[:n]) if keywords else "(no keywords)"

CONTRAST_NOTE = (
    "This topic was labelled '[OWN]', but its documents are often confused with those of another topic, "
    "labelled '[COMPETITOR]', whose documents read:\n"
    "[COMPETITOR_DOCUMENTS]\n"
    "Give this topic a new short label, neither '[OWN]' nor '[COMPETITOR]', that tells it apart from that other "
    "topic."
)


def contrast_note(own_label: str, competitor_label: str, competitor_documents: Sequence[str]) -> str:
    """CONTRAST_NOTE filled in: the topic's label, the competing topic's label and its documents (each one line,
    as in ``fill``), in one pass."""
    return _filled(CONTRAST_NOTE, {"[OWN]": one_line(own_label), "[COMPETITOR]": one_line(competitor_label),
                                   "[COMPETITOR_DOCUMENTS]": _bullets(competitor_documents)})
