"""Token strings for display: stored vocab entries decoded to the text they stand for.

Byte-level BPE vocabularies (GPT-2, SmolLM2, LLaMA 3, Qwen) spell every byte as a printable
character ('Ġ' = space, 'Ċ' = newline); SentencePiece vocabularies use '▁' for a space and
`<0x0A>` for raw bytes. `TokenText(vocab)` picks the scheme once and decodes ids to text
without loading a tokenizer.
"""

from __future__ import annotations

import re
from functools import cache

_SENTENCEPIECE_BYTE = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


@cache
def byte_decoder() -> dict[str, int]:
    """GPT-2's printable-character -> byte table (the inverse of its `bytes_to_unicode`)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return {chr(char): byte for byte, char in zip(printable, chars, strict=True)}


def decode_byte_level(token: str) -> str:
    """The text of one byte-level BPE token ('Ġthe' -> ' the'); incomplete UTF-8 shows as '�'."""
    table = byte_decoder()
    raw = bytearray()
    for char in token:
        if char in table:
            raw.append(table[char])
        else:
            raw.extend(char.encode("utf-8"))
    return raw.decode("utf-8", errors="replace")


def decode_sentencepiece(token: str) -> str:
    """The text of one SentencePiece token ('▁the' -> ' the', '<0x0A>' -> newline)."""
    match = _SENTENCEPIECE_BYTE.match(token)
    if match:
        return bytes([int(match.group(1), 16)]).decode("utf-8", errors="replace")
    return token.replace("▁", " ")


def is_byte_level(vocab: list[str]) -> bool:
    """True if the vocabulary spells spaces/newlines as byte-level characters ('Ġ', 'Ċ')."""
    return any(("Ġ" in token or "Ċ" in token) for token in vocab)


class TokenText:
    """Decodes token ids of one model's vocabulary to display text (the whole vocabulary is
    decoded once, ~0.1 s for 50k tokens; lookups are then list indexing)."""

    def __init__(self, vocab: list[str]):
        self.vocab = vocab
        decode = decode_byte_level if is_byte_level(vocab) else decode_sentencepiece
        self.texts = [decode(token) for token in vocab]

    def __call__(self, token_id: int) -> str:
        """The text of `token_id` ('' for an id outside the vocabulary)."""
        token_id = int(token_id)
        return self.texts[token_id] if 0 <= token_id < len(self.texts) else ""

    def many(self, token_ids: list[int]) -> list[str]:
        """The text of each id."""
        texts, n = self.texts, len(self.texts)
        return [texts[t] if 0 <= t < n else "" for t in token_ids]
