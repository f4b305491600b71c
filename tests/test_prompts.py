import pytest

from shared.prompts import (
    EXAMPLE_ANSWER,
    SYSTEM_PROMPT,
    build_messages,
    clean_label,
    keyword_label,
    truncate_words,
    validate_template,
    with_keyword,
)


def test_messages_carry_the_recipe_prompt_with_documents_and_keywords():
    messages = build_messages([truncate_words("first doc " * 200, 10), "second doc"], ["tax", "budget"])
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[0]["content"] == SYSTEM_PROMPT
    assert messages[2]["content"] == EXAMPLE_ANSWER
    main = messages[3]["content"]
    assert "- first doc first doc" in main and "- second doc" in main
    assert "'tax, budget'" in main
    assert "[DOCUMENTS]" not in main and "[KEYWORDS]" not in main
    first_line = next(line for line in main.splitlines() if line.startswith("- first"))
    assert len(first_line.split()) == 1 + 10 + 1  # dash, 10 words, ellipsis


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Government budget and economic policies", "Government budget and economic policies"),
        ("  Label: Haskell Libraries\nThis topic is about", "Haskell Libraries"),
        ('"Perl Module Testing".', "Perl Module Testing"),
        ("\n\nTopic: **Qt Framework**", "Qt Framework"),
        ("one two three four five six seven eight nine ten eleven twelve", "one two three four five six seven eight nine ten"),
        ("   \n  ", None),
        ('""', None),
    ],
)
def test_clean_label(raw, expected):
    assert clean_label(raw) == expected


def test_keyword_label_is_the_top_keywords():
    assert keyword_label(["a", "b", "c", "d", "e"]) == "a, b, c, d"
    assert keyword_label([]) == "(no keywords)"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # Shapes of answers Llama-2-chat and Qwen give to the recipe's prompt.
        ("  Sure, here is a short label for this topic:\n\nEnvironmental impacts of eating meat", "Environmental impacts of eating meat"),
        ("Sure! Here's a short label for the topic:\n\n\"Eating Meat and the Environment\"", "Eating Meat and the Environment"),
        ("Certainly! The label is: Qt Framework", "Qt Framework"),
        ("Based on the documents and keywords, the label is:\nTeX Live", "TeX Live"),
        ("**Label:** Sequence Alignment and Analysis", "Sequence Alignment and Analysis"),
        ("1. Audio Processing Toolkit\n2. Sound libraries", "Audio Processing Toolkit"),
        ("- Go Programming Language", "Go Programming Language"),
        ("Short label: GNOME Desktop Extensions.", "GNOME Desktop Extensions"),
        ("Sure, here is a short label for this topic:", None),
    ],
)
def test_clean_label_drops_preambles_and_markup(raw, expected):
    assert clean_label(raw) == expected


def test_a_document_containing_a_tag_is_not_filled_in():
    main = build_messages(["see [KEYWORDS] here"], ["tax"])[-1]["content"]
    assert "- see [KEYWORDS] here" in main and "'tax'" in main


def test_taken_labels_are_listed_in_the_retry_prompt():
    main = build_messages(["doc"], ["kw"], taken=["Python Libraries", "Qt Framework"])[-1]["content"]
    assert "already used for other topics: 'Python Libraries', 'Qt Framework'" in main


def test_with_keyword_adds_the_first_keyword_not_in_the_label():
    assert with_keyword("Python Libraries", ["python", "numpy", "arrays"], taken=set()) == "Python Libraries (numpy)"
    assert with_keyword("A", ["b", "c"], taken={"a b"}) == "A (c)"


def test_custom_templates_need_a_tag():
    assert validate_template("Label this: [KEYWORDS]") is None
    assert "must contain [KEYWORDS] or [DOCUMENTS]" in validate_template("Label this topic")


def test_generation_stops_once_a_label_line_is_complete():
    from worker.labeling.base import label_line_done

    assert not label_line_done("Qt Framework")  # the line may go on
    assert label_line_done("Qt Framework\n")
    assert not label_line_done("Sure, here is a short label:\n")  # a preamble alone: the label follows
    assert label_line_done("Sure, here is a short label:\n\nQt Framework\n")


def test_special_tokens_are_taken_out_of_user_text_longest_first():
    from worker.labeling.base import defuse, special_token_pattern

    pattern = special_token_pattern(["<|im_end|>", "<|im", "", "<|im_start|>"])
    conversation = [{"role": "user", "content": "a<|im_end|>b<|im_start|>c<|imd"}]
    assert defuse(conversation, pattern) == [{"role": "user", "content": "abcd"}]
    assert defuse(conversation, special_token_pattern([])) == conversation
