import json

import pytest

from shared.corpus import CorpusError, check_size, from_json_items, parse_csv, parse_file, parse_jsonl, parse_lines
from shared.schemas import DocumentIn


def test_lines_skip_blank_lines_and_strip():
    assert parse_lines("first doc\n\n  second doc  \r\n\t\nthird") == [
        ("first doc", None),
        ("second doc", None),
        ("third", None),
    ]


def test_csv_uses_the_text_column_and_an_optional_title():
    data = 'id,title,text\n1,Hello,"first, with a comma"\n2,,second\n3,Empty,\n'
    assert parse_csv(data) == [("first, with a comma", "Hello"), ("second", None)]


def test_csv_with_a_chosen_text_column():
    data = "id,body,headline\n1,the body,the headline\n"
    assert parse_csv(data, text_column="body", title_column="headline") == [("the body", "the headline")]


def test_csv_without_an_obvious_text_column_asks_for_one():
    with pytest.raises(CorpusError, match="pick the text column.*id, summary"):
        parse_csv("id,summary\n1,x\n")


def test_csv_with_a_missing_column_names_the_columns():
    with pytest.raises(CorpusError, match="no column 'nope'"):
        parse_csv("text\nx\n", text_column="nope")


def test_jsonl_reads_text_and_title_and_reports_the_bad_line():
    data = json.dumps({"text": "a", "title": "T"}) + "\n\n" + json.dumps({"text": "b"}) + "\n"
    assert parse_jsonl(data) == [("a", "T"), ("b", None)]
    with pytest.raises(CorpusError, match="line 2 .* not valid JSON"):
        parse_jsonl('{"text": "a"}\n{oops\n')
    with pytest.raises(CorpusError, match='line 1 .*"text"'):
        parse_jsonl('{"body": "a"}\n')


def test_files_by_extension_and_encoding_errors():
    assert parse_file(b"\xef\xbb\xbfone\ntwo\n", "docs.TXT") == [("one", None), ("two", None)]
    with pytest.raises(CorpusError, match="unsupported file type '.pdf'"):
        parse_file(b"x", "paper.pdf")
    with pytest.raises(CorpusError, match="not UTF-8"):
        parse_file(b"caf\xe9\n", "docs.txt")


def test_json_items_accept_strings_and_objects_but_not_blanks():
    assert from_json_items(["a", DocumentIn(text=" b ", title="B")]) == [("a", None), ("b", "B")]
    with pytest.raises(CorpusError, match=r"documents\[1\] is empty"):
        from_json_items(["a", "   "])


def test_size_limits():
    check_size([("a", None)] * 3, minimum=3, maximum=5)
    with pytest.raises(CorpusError, match="at least 3"):
        check_size([("a", None)] * 2, minimum=3, maximum=5)
    with pytest.raises(CorpusError, match="at most 5"):
        check_size([("a", None)] * 6, minimum=3, maximum=5)
