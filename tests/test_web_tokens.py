"""Token display text decoded from stored vocab strings, without loading a tokenizer."""

from __future__ import annotations

import pytest

from latentpedia.engine.tokens import TokenText, byte_decoder, decode_byte_level, decode_sentencepiece, is_byte_level
from tests.tiny import tiny_llama


def test_byte_level_tokens_decode_to_their_text():
    assert decode_byte_level("Ġthe") == " the"
    assert decode_byte_level("ĊĊ") == "\n\n"
    assert decode_byte_level("ĉif") == "\tif"
    assert decode_byte_level("Ã©t") == "ét"  # two bytes of one UTF-8 character
    assert decode_byte_level("<|endoftext|>") == "<|endoftext|>"
    assert decode_byte_level("Ã") == "\ufffd"  # half a character
    assert len(byte_decoder()) == 256 and sorted(byte_decoder().values()) == list(range(256))


def test_sentencepiece_tokens_decode_to_their_text():
    assert decode_sentencepiece("▁the") == " the"
    assert decode_sentencepiece("<0x0A>") == "\n"
    assert decode_sentencepiece("é") == "é"
    assert not is_byte_level(["▁the", "é", "<0x0A>"]) and is_byte_level(["Ġthe", "a"])


def test_token_text_agrees_with_the_real_tokenizer(tmp_path_factory):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama(tmp_path_factory.mktemp("tok") / "tiny"))
    vocab = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    text = TokenText(vocab)
    for token_id in range(len(vocab)):
        expected = tokenizer.decode([token_id])
        if "\ufffd" not in expected:
            assert text(token_id) == expected, (token_id, vocab[token_id])
    assert text(len(vocab) + 5) == ""


@pytest.mark.parametrize("vocab", [["Ġa", "b"], ["▁a", "b"]])
def test_token_text_memoizes(vocab):
    text = TokenText(vocab)
    assert text.many([0, 1, 0]) == [" a", "b", " a"]
