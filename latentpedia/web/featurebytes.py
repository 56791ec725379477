"""A latent's `activations` as JSON bytes made straight from its stored examples, for the feature
JSON (web/featurejson.py): the same content pydantic's dump of `feature_page`'s `Activation`s
gives (tests/test_web_featurejson.py compares them), without building 32 models per miss.

Stored values are float16, so each has one of 65,536 texts: the table of them is dumped once by
pydantic (the same float formatting as the page's dump) and an example's dense `values` list is a
join of table entries. Each window's `tokens` / `token_ids` JSON comes from the reader's cache.
"""

from __future__ import annotations

from functools import cache

import numpy as np
from pydantic import TypeAdapter

from latentpedia.web.pages.feature import KIND_NAMES, _quantile_bounds
from latentpedia.web.pages.feature_reader import FeatureInputs, StoredExample, WindowTokens

_FLOATS = TypeAdapter(list[float])
_NUMBER = TypeAdapter(float | None)
_TEXT = TypeAdapter(str)
_EMPTY = WindowTokens([], [])


@cache
def float16_texts() -> tuple[bytes, ...]:
    """JSON text of every float16 value, by its bit pattern (as float32, as the page reads them)."""
    values = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32).tolist()
    return tuple(_FLOATS.dump_json(values)[1:-1].split(b","))


def activations_json(inputs: FeatureInputs) -> bytes:
    """`inputs`' examples as the JSON list of the page's `activations`."""
    record, index = inputs.source.record, inputs.index
    ref = b"".join((b'{"modelId":', _TEXT.dump_json(record.model_id), b',"layer":', _TEXT.dump_json(record.name),
                    b',"source":', _TEXT.dump_json(record.name), b',"index":', _TEXT.dump_json(str(index)), b',"tokens":'))  # fmt: skip
    texts, max_act = float16_texts(), inputs.latent.max_act
    parts = [_activation_json(e, inputs.windows.get(e.window, _EMPTY), ref, texts, max_act) for e in inputs.examples]
    return b"[" + b",".join(parts) + b"]"


def _activation_json(example: StoredExample, window: WindowTokens, ref: bytes, texts: tuple[bytes, ...], max_act: float | None) -> bytes:
    n = len(window.token_ids)
    row = [texts[0]] * n
    for position, code in zip(example.positions, example.values.view(np.uint16).tolist(), strict=True):
        if position < n:
            row[position] = texts[code]
    kind = KIND_NAMES.get(example.kind, "top")
    low, high = _quantile_bounds(example.group, max_act) if kind == "quantile" else (None, None)
    return b"".join((
        ref, window.tokens_json, b',"token_ids":', window.token_ids_json, b',"values":[', b",".join(row),
        b'],"maxValue":', _NUMBER.dump_json(float(example.max_value or 0.0)), b',"maxValueTokenIndex":', str(int(example.max_pos)).encode(),
        b',"binMin":', _NUMBER.dump_json(low), b',"binMax":', _NUMBER.dump_json(high), b',"binContains":null,"kind":"', kind.encode(),
        b'","group":', str(int(example.group)).encode(), b',"window":', str(int(example.window)).encode(), b"}",
    ))  # fmt: skip
