"""The feature page: every dashboard panel of one latent, from the stored statistics.

`feature_page` turns a latent's stored inputs (read by pages/feature_reader.py) into the
`FeaturePage` both `/{model}/{source}/{index}` (HTML, through `feature_page_data`) and
`/api/feature/{model}/{source}/{index}` (JSON, web/featurejson.py) are made from.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from latentpedia.engine.tokens import TokenText
from latentpedia.store.api import Store
from latentpedia.store.records import SourceRecord
from latentpedia.web.community_schemas import CommentOut, ExplanationOut
from latentpedia.web.pages.common import feature_api_url, feature_url, random_url
from latentpedia.web.pages.community import comments_for, explanations_for
from latentpedia.web.pages.families import Explained, neighbour_explanations, neighbour_fields
from latentpedia.web.map_schemas import MapPosition
from latentpedia.web.pages.maps import map_position
from latentpedia.web.pages.feature_reader import FeatureInputs, FeatureReader, StoredExample, WindowTokens
from latentpedia.web.schemas import Activation, DecoderEntry, FeaturePage, LinkedLatent, QuantileGroup

KIND_NAMES = {0: "top", 1: "quantile"}
N_QUANTILE_GROUPS = 10
# what changes without a rebuild (neighbours and continues_as: their explanations)
COMMUNITY_FIELDS = frozenset({"source", "explanations", "comments", "map", "neighbours", "continues_as"})


def feature_page_data(
    store: Store, model: str, source: str, index: int, text: TokenText | None = None,
    *, reader: FeatureReader | None = None,
) -> FeaturePage:  # fmt: skip
    """The dashboard of latent `index` of `model`/`source` (NotFoundError if unknown).

    `text` decodes token ids (default: built from the model's stored vocabulary); `reader`
    reads the inputs (pass the app's, whose caches outlive a request).
    """
    inputs = (reader or FeatureReader()).read(store, model, source, index, text)
    record = inputs.source.record
    with store.engine.connect() as conn:
        position = map_position(conn, record, index)
        explained = neighbour_explanations(store, record, index, inputs.matches, conn=conn)
    return feature_page(inputs, explanations_for(store, record.id, index), comments_for(store, record.id, index), position, explained)


def feature_page(inputs: FeatureInputs, explanations: Sequence[ExplanationOut] = (), comments: Sequence[CommentOut] = (),
                 map_position: MapPosition | None = None, explained: Explained | None = None, *,
                 with_activations: bool = True) -> FeaturePage:  # fmt: skip
    """The dashboard made of `inputs`, with the given community parts (the one place a
    `FeaturePage` is assembled: the HTML page and the JSON both come from here).
    `with_activations=False` leaves `activations` empty (the JSON makes them as bytes: web/featurebytes.py)."""
    record, latent, index = inputs.source.record, inputs.latent, inputs.index
    model, source = record.model_id, record.name
    logits = latent.logits or {}
    return FeaturePage.model_construct(  # every field set here with its type (test: validation changes nothing)
        modelId=model, layer=source, index=index, source=inputs.source.info,
        max_act=latent.max_act, mean_act=latent.mean_act, frac_nonzero=latent.frac_nonzero,
        density_log10=math.log10(latent.frac_nonzero) if latent.frac_nonzero else None,
        **_logit_tables(logits, inputs.text), logits_basis=logits.get("basis"),
        **_histogram("freq_hist_data", latent.hist),
        **_histogram("logits_hist_data", logits.get("hist")),
        activations=_activations(inputs) if with_activations else [],
        quantile_groups=_quantile_groups(inputs.examples, latent.max_act),
        explanations=list(explanations), comments=list(comments),
        aligned=[DecoderEntry.model_construct(dim=int(d), value=float(v)) for d, v in latent.aligned or []],
        **_neuronpedia_lists(latent),
        aligned_space=(record.meta or {}).get("aligned_space"),
        map=map_position,
        correlated=[LinkedLatent.model_construct(index=int(i), value=float(v), url=feature_url(model, source, int(i))) for i, v in latent.correlated or []],
        **_neighbours(record, index), **neighbour_fields(record, index, inputs.matches, explained),
    )  # fmt: skip


def _neuronpedia_lists(latent) -> dict[str, list]:
    """`aligned` and `correlated` again under Neuronpedia's names (what we do not compute: empty)."""
    aligned, correlated = latent.aligned or [], latent.correlated or []
    return {
        "neuron_alignment_indices": [int(d) for d, _ in aligned], "neuron_alignment_values": [float(v) for _, v in aligned],
        "correlated_features_indices": [int(i) for i, _ in correlated], "correlated_features_pearson": [float(v) for _, v in correlated],
        **{name: [] for name in ("neuron_alignment_l1", "correlated_features_l1", "correlated_neurons_indices",
                                 "correlated_neurons_pearson", "correlated_neurons_l1")},
    }  # fmt: skip


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


def _activations(inputs: FeatureInputs) -> list[Activation]:
    empty = WindowTokens([], [])
    windows = [inputs.windows.get(e.window, empty) for e in inputs.examples]
    values = _dense_values(inputs.examples, [len(w.token_ids) for w in windows])
    max_act, record = inputs.latent.max_act, inputs.source.record
    ref = {"modelId": record.model_id, "layer": record.name, "source": record.name, "index": str(inputs.index)}  # Neuronpedia's row fields
    return [_activation(e, w, v, max_act, ref) for e, w, v in zip(inputs.examples, windows, values, strict=True)]


def _dense_values(examples: list[StoredExample], lengths: list[int]) -> list[list[float]]:
    """Each example's values over its whole window (zero where nothing was stored), all
    examples at once; positions past the window's end are dropped."""
    out = []
    for example, n in zip(examples, lengths, strict=True):
        row = [0.0] * n
        for position, value in zip(example.positions, example.values.astype(np.float32).tolist(), strict=True):
            if position < n:
                row[position] = value
        out.append(row)
    return out


def _activation(example: StoredExample, window: WindowTokens, values: list[float], max_act: float | None, ref: dict[str, str]) -> Activation:
    """An example window with its dense per-token values.

    Constructed without validation (like the whole page): these lists are most of a page,
    validating them cost more than the rest of the page, every type is set here, and a test
    checks that validating the result changes nothing. `tokens` and `token_ids` are the
    window's own lists (shared through the reader's cache: read only)."""
    kind = KIND_NAMES.get(example.kind, "top")
    low, high = _quantile_bounds(example.group, max_act) if kind == "quantile" else (None, None)
    return Activation.model_construct(
        **ref, tokens=window.tokens, token_ids=window.token_ids, values=values,
        maxValue=float(example.max_value or 0.0), maxValueTokenIndex=int(example.max_pos),
        binMin=low, binMax=high, binContains=None, kind=kind, group=int(example.group), window=int(example.window),
    )  # fmt: skip


def _quantile_groups(examples: list[StoredExample], max_act: float | None) -> list[QuantileGroup]:
    """The quantile intervals that hold examples, highest first."""
    counts: dict[int, int] = {}
    for example in examples:
        if KIND_NAMES.get(example.kind) == "quantile":
            counts[example.group] = counts.get(example.group, 0) + 1
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
