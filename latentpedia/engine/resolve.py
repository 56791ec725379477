"""Sources as everything above the store uses them: one place turns a spec or a stored source
record into a `Source`, with one bounded cache.

- `source_record(store, model_id, name)`: the stored record, or NotFoundError naming what is
  unknown (the web's 404s, the CLI's clear lines).
- `resolve_source(model, spec)`: '6-mlp' -> the neurons of layer 6; a path -> the SAE stored
  there, validated against the model's hook width (build, import, train, CLI experiments).
- `source_from_record(model, record)`: the `Source` a stored record stands for (live routes,
  experiments, training imports). Loaded sources are kept in ONE least-recently-used cache of
  `MAX_CACHED` entries per process, keyed by the model object and the record's identity and
  build time, so a rebuilt source is read again and an SAE is read from disk once.
"""

from __future__ import annotations

import os
import re
import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from latentpedia.errors import InvalidInputError, NotFoundError

if TYPE_CHECKING:
    from latentpedia.models.loader import LoadedModel
    from latentpedia.sources.base import Source
    from latentpedia.store.api import Store
    from latentpedia.store.records import SourceRecord

MAX_CACHED = 16
NEURON_SPEC = re.compile(r"^(\d+)-mlp$")


class _SourceCache:
    """A thread-safe LRU of loaded sources (the only one in the process)."""

    def __init__(self, size: int):
        self.size = size
        self._items: OrderedDict[tuple, Source] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple) -> Source | None:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            return None

    def put(self, key: tuple, source: Source) -> None:
        with self._lock:
            self._items[key] = source
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


CACHE = _SourceCache(MAX_CACHED)


def source_record(store: Store, model_id: str, name: str) -> SourceRecord:
    """The stored source, or NotFoundError naming what is unknown."""
    record = store.get_source(model_id, name)
    if record is None:
        if store.get_model(model_id) is None:
            raise NotFoundError(f"unknown model {model_id!r}")
        names = ", ".join(s.name for s in store.list_sources(model_id)) or "none"
        raise NotFoundError(f"model {model_id!r} has no source {name!r} (sources: {names})")
    return record


def resolve_source(model: LoadedModel, spec: str, *, name: str | None = None, hook: str | None = None) -> Source:
    """'6-mlp' -> the MLP neurons of layer 6; a path -> the SAE stored there (validated)."""
    from latentpedia.models.hooks import hook_width
    from latentpedia.sources import NeuronSource, load_sae

    match = NEURON_SPEC.match(spec)
    if match:
        layer = int(match.group(1))
        if layer >= model.n_layers:
            raise InvalidInputError(f"layer {layer} does not exist: {model.id} has layers 0..{model.n_layers - 1}")
        return NeuronSource(model, layer)
    path = Path(spec)
    if not path.exists():
        raise InvalidInputError("not a source: expected '<layer>-mlp' or the path of an SAE folder", spec)
    sae = load_sae(path, hook_name=hook, source_id=name)
    width = hook_width(model, sae.hook_name)
    if sae.d_in != width:
        raise InvalidInputError(f"SAE d_in is {sae.d_in} but {sae.hook_name} of {model.id} has width {width}", path)
    return sae


def stored_path(record: Any) -> str | None:
    """Where a stored SAE's files are (its path, or the origin its import recorded)."""
    meta = record.meta or {}
    return record.path or (meta.get("origin") or {}).get("path") or meta.get("path")


def source_from_record(model: LoadedModel, record: Any) -> Source:
    """The `Source` a stored source record stands for: neurons of a layer, or an SAE read from
    its folder (cached; see the module doc)."""
    key = (id(model), model.id, record.name, getattr(record, "id", None), stored_path(record), getattr(record, "built_at", None))
    source = CACHE.get(key)
    if source is None:
        source = _load(model, record)
        CACHE.put(key, source)
    return source


def load_source(store: Store, model: LoadedModel, name: str) -> Source:
    """The `Source` of the atlas's source `name` of `model` (NotFoundError if there is none)."""
    return source_from_record(model, source_record(store, model.id, name))


def _load(model: LoadedModel, record: Any) -> Source:
    from latentpedia.sources import NeuronSource, load_sae

    if record.kind == "mlp":
        source: Source = NeuronSource(model, int(record.layer))
        source.id = record.name
        return source
    path = stored_path(record)
    if not path:
        raise InvalidInputError(f"source {record.name} has no stored weights to run (no path)")
    if not os.path.exists(path):
        raise InvalidInputError(f"the files of source {record.name!r} are not on this machine ({path}); live inference needs them")
    return load_sae(path, hook_name=record.hook_name, source_id=record.name)
