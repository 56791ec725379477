"""`import_neuronpedia`: a Neuronpedia dataset export (exchange.np_layout) into an atlas.

Per source folder: every file is read and checked first (errors name the file, line and field),
then everything is written in ONE transaction (exchange.writer): a failed or killed import leaves
nothing of that source, and a rerun skips the sources whose files were already imported (their
digest is in the source's meta) and does the rest.

Token texts are mapped to the model's vocabulary when the store has the model; otherwise the
model is added as a static record (no weights) whose vocabulary is the export's `vocab.json.gz`
(written by latentpedia) or the imported token texts themselves.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from latentpedia.errors import InvalidInputError
from latentpedia.exchange.jsonl import Fields, RowError, read_rows
from latentpedia.exchange.np_layout import EXTRA, VOCAB_FILE, batch_files, source_dirs, source_set_name
from latentpedia.exchange.np_rows import TokenMapper, assign_ranks, parse_activation, parse_explanation, parse_feature
from latentpedia.exchange.plan import SourcePlan
from latentpedia.exchange.writer import write_plan
from latentpedia.store.api import Store
from latentpedia.store.records import ModelRecord


def folder_digest(folder: Path) -> str:
    """sha256 over the names and bytes of every file of a source folder."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode())
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def _one_row(path: Path, required: bool) -> dict[str, Any]:
    if not path.is_file():
        if required:
            raise InvalidInputError("missing (every Neuronpedia source folder has one)", path)
        return {}
    rows = list(read_rows(path))
    if len(rows) != 1:
        raise RowError(f"expected exactly one row, found {len(rows)}", path)
    return rows[0][1]


def _vocab_file(folder: Path) -> list[str] | None:
    path = folder.parent / VOCAB_FILE
    if not path.is_file():
        return None
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            vocab = json.load(f)
    except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InvalidInputError(f"cannot read the vocabulary ({err})", path) from None
    if not isinstance(vocab, list) or not all(isinstance(t, str) for t in vocab):
        raise InvalidInputError("expected a JSON list of token strings", path)
    return vocab


def _mapper(store: Store, model: ModelRecord | None, folder: Path) -> TokenMapper:
    """Token mapping into the stored model's vocabulary, or a static model's own."""
    if model is not None:
        vocab = store.get_vocab(model.id)
        static = bool((model.spec or {}).get("static"))
        if not vocab and not static:
            raise InvalidInputError(f"model {model.id!r} is in the store without a vocabulary: token texts "
                                    "cannot be mapped", folder)  # fmt: skip
        return TokenMapper(vocab, growable=static)
    carried = _vocab_file(folder)
    return TokenMapper(carried or [], growable=carried is None)


def read_source(store: Store, folder: Path) -> SourcePlan:
    """Read and check one source folder (nothing is written)."""
    source_row = _one_row(folder / "source.jsonl", required=False)
    model_row = _one_row(folder / "model.jsonl", required=False)
    model_id = str(source_row.get("modelId") or model_row.get("id") or folder.parent.name)
    model = store.get_model(model_id)
    plan = SourcePlan(folder, folder_digest(folder), model_id, model_row, source_row,
                      _mapper(store, model, folder), model_exists=model is not None)  # fmt: skip
    for path in batch_files(folder, "features"):
        for line, row in read_rows(path):
            latent = parse_feature(Fields(row, path, line), plan.mapper)
            if latent.index in plan.latents:
                raise RowError(f"latent {latent.index} appears twice", path, line, "index")
            plan.latents[latent.index] = latent
    for path in batch_files(folder, "activations"):
        plan.examples += [parse_activation(Fields(row, path, line), plan.mapper) for line, row in read_rows(path)]
    for path in batch_files(folder, "explanations"):
        plan.explanations += [parse_explanation(Fields(row, path, line)) for line, row in read_rows(path)]
    if not plan.latents:
        raise InvalidInputError("no features (features/batch-*.jsonl.gz with Neuron rows)", folder)
    assign_ranks(plan.examples, {i: latent.max_act for i, latent in plan.latents.items()})
    return plan


def source_identity(plan: SourcePlan) -> dict[str, Any]:
    """kind, hook_name, layer, d_in, d_sae of the imported source (exact from EXTRA, else from
    Neuronpedia's fields and the source id `{layer}-{set}`)."""
    extra = plan.source_row.get(EXTRA) or {}
    if extra:
        return {k: extra.get(k) for k in ("kind", "hook_name", "layer", "d_in", "d_sae")}
    config = plan.source_row.get("saelensConfig") or {}
    config = config if isinstance(config, dict) else {}
    head = plan.name.partition("-")[0]
    layer = int(head) if head.isdigit() else None
    widest = max([*plan.latents, *(e.index for e in plan.examples), *(x.index for x in plan.explanations)])
    hook = config.get("hook_name") or _any_hook(plan) or f"blocks.{layer if layer is not None else 0}.hook_resid_post"
    return {
        "kind": source_set_name(plan.name).partition("-")[0] or "sae", "hook_name": hook, "layer": layer,
        "d_in": int(config.get("d_in") or plan.model_row.get("dimension") or 0),
        "d_sae": max(int(config.get("d_sae") or 0), widest + 1),
    }  # fmt: skip


def _any_hook(plan: SourcePlan) -> str | None:
    for path in batch_files(plan.folder, "features")[:1]:
        for _, row in read_rows(path):
            return row.get("hookName")
    return None


def import_neuronpedia(store: Store, root: Path, *, log: Callable[[str], None] = print) -> dict[str, str]:
    """Import every source folder under `root`; returns {"model/source": "imported" | "skipped"}."""
    outcome = {}
    for folder in source_dirs(Path(root)):
        plan = read_source(store, folder)
        key = f"{plan.model_id}/{plan.name}"
        existing = store.get_source(plan.model_id, plan.name)
        if existing is not None:
            done = (existing.meta.get("import") or {}).get("digest")
            if done == plan.digest:
                outcome[key] = "skipped"
                log(f"{key}: already imported from these files, skipped")
                continue
            raise InvalidInputError(f"the atlas already has a source {plan.name!r} of model {plan.model_id!r} "
                                    "(built or imported from other files); delete it first to replace it", folder)  # fmt: skip
        write_plan(store, plan, source_identity(plan))
        outcome[key] = "imported"
        log(f"{key}: {len(plan.latents)} latents, {len(plan.examples)} examples, "
            f"{len(plan.explanations)} explanations imported")  # fmt: skip
    return outcome
