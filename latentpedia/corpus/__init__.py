"""Corpora: the default offline corpus and user corpora, as fixed-length token windows."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from latentpedia.corpus import cache
from latentpedia.corpus.default import DEFAULT_SEED, default_documents, interleave, stdlib_files
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
    budget or window length that makes no window, and for a corpus too short for one. The windows
    are kept on disk and reused while nothing they depend on changes (corpus/cache.py)."""
    check_window_budget(window_len, n_tokens)
    default = str(corpus) == DEFAULT_CORPUS
    if default:
        spec = {"name": DEFAULT_CORPUS, "seed": seed, "sources": ["pydoc_data.topics", "stdlib docstrings", "stdlib source"]}
    else:
        spec = {"name": Path(corpus).name, "path": str(Path(corpus).resolve()), "text_field": text_field}
    settings = {"bos_id": model.bos_id, "sep_id": separator_id(model), "window_len": window_len, "max_tokens": n_tokens}

    def tokenize() -> TokenizedCorpus:
        docs = interleave(*default_documents(seed)) if default else read_corpus(corpus, text_field=text_field)
        origin = None if default else corpus
        return pack_windows(docs, tokenizer_fn(model), window_len=window_len, max_tokens=n_tokens, origin=origin,
                            bos_id=settings["bos_id"], sep_id=settings["sep_id"])  # fmt: skip

    result = cache.cached(_cache_key(model, corpus, default, seed, text_field, settings), tokenize, TokenizedCorpus)
    result.spec = {**spec, "model": model.id, "window_len": window_len, "max_tokens": n_tokens}
    return result


def _cache_key(model: LoadedModel, corpus: str | Path, default: bool, seed: int, text_field: str, settings: dict) -> str | None:
    """The corpus cache key, or None (not cached) for a path that does not exist: reading it
    then raises the error the user should see."""
    if default:
        return cache.corpus_key(DEFAULT_CORPUS, default_corpus_files(), model.tokenizer, seed=seed, **settings)
    if not Path(corpus).exists():
        return None
    path = str(Path(corpus).resolve())
    return cache.corpus_key(path, cache.corpus_files(corpus), model.tokenizer, text_field=text_field, **settings)


def default_corpus_files() -> list[Path]:
    """The files the default corpus is read from: the standard library's and pydoc's topics."""
    import pydoc_data.topics

    return [*stdlib_files(), Path(pydoc_data.topics.__file__)]
