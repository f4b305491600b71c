"""The embedding stage with the real bundled model: long documents are embedded from all their windows."""

import numpy as np

from tests.conftest import read_corpus
from worker.pipeline.embed import embed, windows


def long_articles(n=3):
    records = read_corpus("news_sections.jsonl")
    return [r["text"] for r in records if len(r["text"].split()) > 900][:n]


def test_long_documents_are_cut_into_windows_of_the_models_input(embedder):
    short = "A short paragraph about sockets."
    texts = [short, *long_articles()]
    pieces, owners = windows(texts, embedder.tokenizer, window_tokens=254, max_windows=3)

    assert pieces[0] == short and owners.tolist().count(0) == 1
    for index, text in enumerate(texts[1:], start=1):
        mine = [p for p, o in zip(pieces, owners) if o == index]
        assert len(mine) == 3  # capped: every article here runs past 3 windows
        assert all(len(embedder.tokenizer(p, add_special_tokens=False)["input_ids"]) <= 254 for p in mine)
        assert text.startswith(mine[0]) and all(p in text for p in mine)
        # consecutive: each window starts where the one before ended (only whitespace between)
        position = 0
        for piece in mine:
            found = text.index(piece, position)
            assert not text[position:found].strip()
            position = found + len(piece)


def test_a_long_document_is_the_mean_of_its_windows(embedder):
    texts = ["Sockets, ports and TCP connections.", *long_articles(2)]
    first_only = embed(texts, embedder, batch_size=8, max_windows=1)
    windowed = embed(texts, embedder, batch_size=8, max_windows=4)

    assert windowed.shape == first_only.shape and np.allclose(np.linalg.norm(windowed, axis=1), 1, atol=1e-5)
    assert windowed[0] @ first_only[0] > 0.9999  # a short text is embedded as before (bf16 batches differ a little)
    pieces, owners = windows(texts, embedder.tokenizer, embedder.max_seq_length - 2, 4)
    direct = embedder.encode([p for p, o in zip(pieces, owners) if o == 1], normalize_embeddings=True)
    mean = direct.mean(axis=0) / np.linalg.norm(direct.mean(axis=0))
    assert windowed[1] @ mean > 0.9999
    assert windowed[1] @ first_only[1] < 0.99  # the later windows changed it
