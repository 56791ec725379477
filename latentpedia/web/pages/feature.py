"""The feature page: every dashboard panel of one latent, from the stored statistics."""

from __future__ import annotations

import math
from typing import Any

from latentpedia.store.api import Store
from latentpedia.store.records import SourceRecord
from latentpedia.web.pages.common import (
    NotFoundError,
    feature_api_url,
    feature_url,
    find_source,
    random_url,
    source_info,
)
from latentpedia.web.pages.community import comments_for, explanations_for
from latentpedia.web.schemas import Activation, DecoderEntry, FeaturePage, LinkedLatent, QuantileGroup
from latentpedia.engine.tokens import TokenText

KIND_NAMES = {0: "top", 1: "quantile"}
N_QUANTILE_GROUPS = 10


def feature_page_data(store: Store, model: str, source: str, index: int, text: TokenText | None = None) -> FeaturePage:
    """The dashboard of latent `index` of `model`/`source` (NotFoundError if unknown).

    `text` decodes token ids (default: built from the model's stored vocabulary).
    """
    record = find_source(store, model, source)
    latent = store.get_latent(record.id, index) if 0 <= index < record.d_sae else None
    if latent is None:
        raise NotFoundError(f"source {source!r} of {model!r} has no built latent {index} (latents 0..{record.d_sae - 1})")
    text = text or TokenText(store.get_vocab(model))
    examples = store.get_examples(record.id, index, with_tokens=True)
    logits = latent.get("logits") or {}
    return FeaturePage(
        modelId=model, layer=source, index=index, source=source_info(record),
        max_act=latent["max_act"], mean_act=latent["mean_act"], frac_nonzero=latent["frac_nonzero"],
        density_log10=_log10(latent["frac_nonzero"]),
        **_logit_tables(logits, text), logits_basis=logits.get("basis"),
        **_histogram("freq_hist_data", latent.get("hist")),
        **_histogram("logits_hist_data", logits.get("hist")),
        activations=[_activation(e, text, latent["max_act"]) for e in examples],
        quantile_groups=_quantile_groups(examples, latent["max_act"]),
        explanations=explanations_for(store, record.id, index), comments=comments_for(store, record.id, index),
        aligned=[DecoderEntry(dim=int(d), value=v) for d, v in latent.get("aligned") or []],
        aligned_space=(record.meta or {}).get("aligned_space"),
        correlated=[LinkedLatent(index=int(i), value=v, url=feature_url(model, source, int(i))) for i, v in latent.get("correlated") or []],
        **_neighbours(record, index),
    )  # fmt: skip


def _log10(value: float | None) -> float | None:
    return math.log10(value) if value else None


def _logit_tables(logits: dict[str, Any], text: TokenText) -> dict[str, list]:
    """pos_/neg_ str, values and token ids of the promoted and suppressed tokens."""
    out: dict[str, list] = {}
    for sign in ("pos", "neg"):
        pairs = logits.get(sign) or []
        out[f"{sign}_token_ids"] = [int(t) for t, _ in pairs]
        out[f"{sign}_str"] = text.many(out[f"{sign}_token_ids"])
        out[f"{sign}_values"] = [float(v) for _, v in pairs]
    return out


def _histogram(prefix: str, hist: dict[str, Any] | None) -> dict[str, list]:
    """Neuronpedia's bar heights (counts) and bar values (bin centres) of a stored histogram."""
    hist = hist or {}
    edges, counts = hist.get("edges") or [], hist.get("counts") or []
    centres = [(a + b) / 2 for a, b in zip(edges, edges[1:], strict=False)]
    return {f"{prefix}_bar_heights": [int(c) for c in counts], f"{prefix}_bar_values": centres[: len(counts)]}


def _quantile_bounds(group: int, max_act: float | None) -> tuple[float, float]:
    width = (max_act or 0.0) / N_QUANTILE_GROUPS
    return group * width, (group + 1) * width


def _activation(example: dict[str, Any], text: TokenText, max_act: float | None) -> Activation:
    """An example window with dense per-token values (zero where nothing was stored)."""
    token_ids = example.get("tokens") or []
    values = [0.0] * len(token_ids)
    for position, value in zip(example["positions"], example["values"], strict=True):
        if position < len(values):
            values[position] = value
    kind = KIND_NAMES.get(example["kind"], "top")
    low, high = _quantile_bounds(example["group"], max_act) if kind == "quantile" else (None, None)
    return Activation(
        tokens=text.many(token_ids), token_ids=token_ids, values=values,
        maxValue=example["max_value"] or 0.0, maxValueTokenIndex=example["max_pos"],
        binMin=low, binMax=high, kind=kind, group=example["group"], window=example["window"],
    )  # fmt: skip


def _quantile_groups(examples: list[dict[str, Any]], max_act: float | None) -> list[QuantileGroup]:
    """The quantile intervals that hold examples, highest first."""
    counts: dict[int, int] = {}
    for example in examples:
        if KIND_NAMES.get(example["kind"]) == "quantile":
            counts[example["group"]] = counts.get(example["group"], 0) + 1
    groups = []
    for group in sorted(counts, reverse=True):
        low, high = _quantile_bounds(group, max_act)
        groups.append(QuantileGroup(group=group, binMin=low, binMax=high, count=counts[group]))
    return groups


def _neighbours(record: SourceRecord, index: int) -> dict[str, str | None]:
    """This page's URLs and the previous / next / random latent links."""
    model, source = record.model_id, record.name
    return dict(
        url=feature_url(model, source, index),
        api_url=feature_api_url(model, source, index),
        prev_url=feature_url(model, source, index - 1) if index > 0 else None,
        next_url=feature_url(model, source, index + 1) if index + 1 < record.d_sae else None,
        random_url=random_url(model, source),
    )
