"""Corpora: the default offline corpus and user corpora, as fixed-length token windows."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from latentpedia.corpus.default import DEFAULT_SEED, default_documents, interleave
from latentpedia.corpus.readers import read_corpus
from latentpedia.corpus.windows import TokenizedCorpus, check_window_budget, pack_windows

if TYPE_CHECKING:
    from latentpedia.models.loader import LoadedModel

DEFAULT_CORPUS = "default"
__all__ = ["DEFAULT_CORPUS", "TokenizedCorpus", "check_window_budget", "prepare_corpus", "tokenizer_fn"]


def tokenizer_fn(model: LoadedModel):
    """Batch tokenizer without special tokens (BOS is added per window)."""

    def tokenize(texts: list[str]) -> list[list[int]]:
        return model.tokenizer(texts, add_special_tokens=False)["input_ids"]

    return tokenize


def separator_id(model: LoadedModel) -> int:
    tok = model.tokenizer
    return tok.eos_token_id if tok.eos_token_id is not None else model.bos_id


def prepare_corpus(
    model: LoadedModel,
    corpus: str | Path = DEFAULT_CORPUS,
    *,
    n_tokens: int,
    window_len: int = 128,
    seed: int = DEFAULT_SEED,
    text_field: str = "text",
) -> TokenizedCorpus:
    """Tokenize `corpus` ("default" or a path) into windows for `model`; InvalidInputError for a
    budget or window length that makes no window, and for a corpus too short for one."""
    check_window_budget(window_len, n_tokens)
    if str(corpus) == DEFAULT_CORPUS:
        prose, code = default_documents(seed)
        docs = interleave(prose, code)
        spec = {"name": DEFAULT_CORPUS, "seed": seed, "sources": ["pydoc_data.topics", "stdlib docstrings", "stdlib source"]}
    else:
        docs = read_corpus(corpus, text_field=text_field)
        spec = {"name": Path(corpus).name, "path": str(Path(corpus).resolve()), "text_field": text_field}
    result = pack_windows(
        docs,
        tokenizer_fn(model),
        bos_id=model.bos_id,
        sep_id=separator_id(model),
        window_len=window_len,
        max_tokens=n_tokens,
        origin=None if str(corpus) == DEFAULT_CORPUS else corpus,
    )
    result.spec = {**spec, "model": model.id, "window_len": window_len, "max_tokens": n_tokens}
    return result
