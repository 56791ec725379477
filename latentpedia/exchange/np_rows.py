"""Neuronpedia rows (Neuron, Activation, Explanation) read into latentpedia's shapes, with
token strings mapped to ids by a `TokenMapper`. Rows carrying latentpedia's EXTRA key are read
exactly from it; plain Neuronpedia rows are converted field by field (docs/neuronpedia.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from latentpedia.engine.tokens import TokenText
from latentpedia.exchange.jsonl import Fields
from latentpedia.exchange.np_layout import EXTRA
from latentpedia.store.accounts import CommunityError
from latentpedia.store.community import SCORE_STATUSES, check_text

MAX_WINDOW = 65_535  # example positions are uint16


class ErrorSite(Protocol):
    """Where a value came from (a file row, a request body): makes the error naming it."""

    def error(self, name: str, problem: str) -> Exception: ...


class TokenMapper:
    """Token text -> id in a model's vocabulary. A `growable` vocabulary (a static source's
    own, made of the imported token texts) adds unknown texts; a model's real one refuses them."""

    def __init__(self, vocab: list[str], *, growable: bool):
        self.vocab, self.growable = list(vocab), growable
        self.texts = TokenText(self.vocab).texts if self.vocab else []
        self.ids: dict[str, int] = {}
        for i, text in enumerate(self.texts):
            self.ids.setdefault(text, i)
        self.grown = False
        self._array: np.ndarray | None = None

    def texts_of(self, ids: np.ndarray) -> list[str]:
        """The texts of token ids (numpy fancy indexing: ~20x faster than a list comprehension)."""
        if self._array is None or len(self._array) != len(self.texts):
            self._array = np.array(self.texts, dtype=object)
        return self._array[ids].tolist()

    def id_of(self, text: str, row: ErrorSite, name: str) -> int:
        found = self.ids.get(text)
        if found is not None:
            return found
        if not self.growable:
            raise row.error(name, f"token {text!r} is not in the model's vocabulary")
        self.vocab.append(text)
        self.texts.append(text)
        self.ids[text] = len(self.vocab) - 1
        self.grown = True
        return len(self.vocab) - 1

    def ids_of(self, texts: list[str], row: ErrorSite, name: str) -> list[int]:
        return [self.id_of(t, row, f"{name}[{i}]") for i, t in enumerate(texts)]

    def carried_ids(self, ids: Any, texts: list[str], row: ErrorSite, name: str) -> list[int]:
        """Token ids carried beside the texts when they decode to exactly those texts, else the
        texts mapped one by one."""
        array = np.array(ids) if isinstance(ids, list) and len(ids) == len(texts) else None
        if array is not None and array.dtype.kind == "i" and (not array.size or 0 <= array.min() <= array.max() < len(self.texts)):
            if self.texts_of(array) == texts:
                return ids
        return self.ids_of(texts, row, name)

    def pad_id(self, bos_id: int) -> int:
        """The token short windows are padded with: "" in a growable vocabulary, else the BOS."""
        if not self.growable:
            return bos_id
        if "" not in self.ids:
            self.vocab.append("")
            self.texts.append("")
            self.ids[""] = len(self.vocab) - 1
            self.grown = True
        return self.ids[""]


@dataclass
class LatentIn:
    index: int
    max_act: float | None
    frac_nonzero: float | None
    mean_act: float | None
    hist: dict[str, Any]
    logits: dict[str, Any]
    aligned: list[Any]
    correlated: list[Any]


@dataclass
class ExampleIn:
    index: int
    token_ids: list[int]
    values: list[float]
    max_value: float
    max_pos: int
    bin_min: float | None  # None: a top example
    kind: int | None = None  # from EXTRA, else assigned by `assign_ranks`
    group: int | None = None
    rank: int | None = None
    window: int | None = None


@dataclass
class ExplanationIn:
    index: int
    text: str
    method: str
    explainer_model: str | None
    prompt_version: str | None = None
    author: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    ordinal: int | None = None
    scores: list[dict[str, Any]] = field(default_factory=list)
    votes: list[tuple[str, int]] = field(default_factory=list)


def _edges(centers: list[float]) -> list[float]:
    """Bin edges around equally spaced bin centers (Neuronpedia stores the centers)."""
    if not centers:
        return []
    width = centers[1] - centers[0] if len(centers) > 1 else 0.0
    return [centers[0] - width / 2] + [c + width / 2 for c in centers]


def _hist(row: Fields, prefix: str) -> dict[str, Any]:
    heights, centers = row.numbers(f"{prefix}_bar_heights"), row.numbers(f"{prefix}_bar_values")
    if len(heights) != len(centers):
        raise row.error(f"{prefix}_bar_heights", f"has {len(heights)} bars but {prefix}_bar_values has {len(centers)}")
    counts = [int(h) if float(h).is_integer() else h for h in heights]
    return {"edges": _edges(centers), "counts": counts} if counts else {}


def _pairs(row: Fields, indices: str, values: str) -> list[list[float]]:
    left, right = row.integers(indices), row.numbers(values)
    if len(left) != len(right):
        raise row.error(indices, f"has {len(left)} entries but {values} has {len(right)}")
    return [[i, v] for i, v in zip(left, right, strict=True)]


def _logits(row: Fields, mapper: TokenMapper) -> dict[str, Any]:
    out: dict[str, Any] = {"basis": "neuronpedia"}
    for side in ("pos", "neg"):
        texts, values = row.strings(f"{side}_str"), row.numbers(f"{side}_values")
        if len(texts) != len(values):
            raise row.error(f"{side}_str", f"has {len(texts)} tokens but {side}_values has {len(values)}")
        out[side] = [[t, v] for t, v in zip(mapper.ids_of(texts, row, f"{side}_str"), values, strict=True)]
    out["hist"] = _hist(row, "logits_hist_data")
    return out


def parse_feature(row: Fields, mapper: TokenMapper) -> LatentIn:
    """A Neuron row as a latent's statistics."""
    index = row.integer("index", minimum=0)
    extra = row.mapping(EXTRA)
    if extra:
        return _exact_latent(index, extra, row)
    correlated = _pairs(row, "correlated_neurons_indices", "correlated_neurons_pearson") or \
        _pairs(row, "correlated_features_indices", "correlated_features_pearson")  # fmt: skip
    return LatentIn(
        index=index, max_act=row.number("maxActApprox", required=False), mean_act=None,
        frac_nonzero=_density(row), hist=_hist(row, "freq_hist_data"), logits=_logits(row, mapper),
        aligned=_pairs(row, "neuron_alignment_indices", "neuron_alignment_values"), correlated=correlated,
    )  # fmt: skip


def _density(row: Fields) -> float | None:
    value = row.number("frac_nonzero", required=False)
    if value is not None and not 0 <= value <= 1:
        return None if value == -1 else _raise(row, "frac_nonzero", f"must be in [0, 1], got {value}")
    return value


def _raise(row: Fields, name: str, problem: str) -> Any:
    raise row.error(name, problem)


def _exact_latent(index: int, extra: dict[str, Any], row: Fields) -> LatentIn:
    """A latent from latentpedia's exact panels (EXTRA of a Neuron row)."""
    expected = {"hist": dict, "logits": dict, "aligned": list, "correlated": list}
    for name, kind in expected.items():
        if not isinstance(extra.get(name), kind):
            raise row.error(f"{EXTRA}.{name}", f"expected {kind.__name__}")
    for name in ("max_act", "frac_nonzero", "mean_act"):
        if extra.get(name) is not None and not isinstance(extra[name], int | float):
            raise row.error(f"{EXTRA}.{name}", "expected a number or null")
    density = extra["frac_nonzero"] if "frac_nonzero" in extra else row.number("frac_nonzero", required=False)
    return LatentIn(index, extra.get("max_act"), density, extra.get("mean_act"),
                    *(extra[k] for k in expected))  # fmt: skip


def parse_activation(row: Fields, mapper: TokenMapper) -> ExampleIn:
    """An Activation row as an example (token texts mapped to ids)."""
    index = row.integer("index", minimum=0)
    tokens = row.strings("tokens", required=True)
    values = row.numbers("values", required=True)
    if not tokens or len(tokens) != len(values):
        raise row.error("values", f"has {len(values)} values for {len(tokens)} tokens (need as many, at least one)")
    if len(tokens) > MAX_WINDOW:
        raise row.error("tokens", f"has {len(tokens)} tokens; at most {MAX_WINDOW}")
    extra = row.mapping(EXTRA)
    ids = mapper.carried_ids(extra.get("token_ids"), tokens, row, "tokens")
    max_pos = row.integer("maxValueTokenIndex", required=False, default=None, minimum=0)
    if max_pos is None or max_pos >= len(values):
        max_pos = max(range(len(values)), key=values.__getitem__)
    max_value = row.number("maxValue", required=False, default=values[max_pos])
    bin_min = row.number("binMin", required=False)
    example = ExampleIn(index, ids, values, max_value, max_pos, None if bin_min is None or bin_min < 0 else bin_min)
    if extra:
        for name in ("kind", "group", "rank", "window"):
            value = extra.get(name)
            if not isinstance(value, int) or isinstance(value, bool) or value < (-1 if name == "group" else 0):
                raise row.error(f"{EXTRA}.{name}", f"expected an integer, got {value!r}")
            setattr(example, name, value)
    return example


def parse_explanation(row: Fields) -> ExplanationIn:
    """An Explanation row (scores and votes from EXTRA when present)."""
    index = row.integer("index", minimum=0)
    try:
        text = check_text("explanation", row.text("description"))
    except CommunityError as err:
        raise row.error("description", str(err)) from None
    method = row.text("typeName", required=False, default="neuronpedia")
    model = row.text("explanationModelName", required=False)
    extra = row.mapping(EXTRA)
    if not extra:
        details = {"neuronpedia": {k: row.get(k) for k in ("id", "authorId", "scoreV1", "scoreV2") if row.get(k) is not None}}
        return ExplanationIn(index, text, method, model, details=details)
    votes = extra.get("votes") or []
    if not isinstance(votes, list) or not all(isinstance(v, list) and len(v) == 2 for v in votes):
        raise row.error(f"{EXTRA}.votes", "expected [[user, value], ...]")
    scores = extra.get("scores") or []
    if not isinstance(scores, list) or not all(isinstance(s, dict) and s.get("scorer") for s in scores):
        raise row.error(f"{EXTRA}.scores", "expected a list of score objects with a scorer")
    if any(s.get("status") not in SCORE_STATUSES for s in scores):
        raise row.error(f"{EXTRA}.scores", f"a score's status is one of {SCORE_STATUSES}")
    return ExplanationIn(index, text, method, model, extra.get("prompt_version"), extra.get("author"),
                         extra.get("details") or {}, extra.get("ordinal"), scores,
                         [(str(u), int(v)) for u, v in votes])  # fmt: skip


N_QUANTILE_GROUPS = 10  # the atlas splits (0, max] into 10 equal intervals (feature pages, np_export)


def quantile_group(bin_min: float, max_act: float) -> int:
    """The interval of (0, max_act] (one of N_QUANTILE_GROUPS equal ones) where a bin starting
    at `bin_min` starts: what the feature page shows as the example's binMin/binMax. Exact for
    our own exports (binMin = group * max/10)."""
    if not max_act > 0:
        return 0
    return min(N_QUANTILE_GROUPS - 1, max(0, int(bin_min / (max_act / N_QUANTILE_GROUPS) + 1e-6)))


def assign_ranks(examples: list[ExampleIn], max_act: dict[int, float | None] | None = None) -> None:
    """Kind, group and rank of examples read without them: per latent, top examples (no bin)
    ranked by max value; quantile samples grouped by the interval of (0, max] their bin's lower
    bound falls in (`max_act[index]`, else the largest example value), ranked inside."""
    by_latent: dict[int, list[ExampleIn]] = {}
    for example in examples:
        if example.kind is None:
            by_latent.setdefault(example.index, []).append(example)
    for index, group in by_latent.items():
        top = sorted((e for e in group if e.bin_min is None), key=lambda e: -e.max_value)
        for rank, example in enumerate(top):
            example.kind, example.group, example.rank = 0, -1, rank
        peak = (max_act or {}).get(index) or max(e.max_value for e in group)
        groups: dict[int, list[ExampleIn]] = {}
        for example in group:
            if example.bin_min is not None:
                groups.setdefault(quantile_group(example.bin_min, peak), []).append(example)
        for number, members in groups.items():
            for rank, example in enumerate(sorted(members, key=lambda e: -e.max_value)):
                example.kind, example.group, example.rank = 1, number, rank
