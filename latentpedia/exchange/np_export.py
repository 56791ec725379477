"""Writing an atlas in Neuronpedia's dataset export layout (see exchange.np_layout), so that a
Neuronpedia instance can import it and `latentpedia import-neuronpedia` can read it back exactly."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterator
from itertools import groupby
from pathlib import Path
from typing import Any

from latentpedia.engine.tokens import TokenText
from latentpedia.exchange.canonical import AtlasReader, ExplanationRows
from latentpedia.exchange.jsonl import write_rows
from latentpedia.exchange.np_layout import BATCH, CONFIG_FILES, EXTRA, VOCAB_FILE, source_set_name
from latentpedia.store.api import Store
from latentpedia.store.records import SourceRecord

CREATOR = "latentpedia"  # creatorId / authorId of exported rows (Neuronpedia replaces them too)


def _centers(edges: list[float]) -> list[float]:
    return [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:], strict=False)]


def feature_row(latent: dict[str, Any], source: SourceRecord, text: TokenText) -> dict[str, Any]:
    """A Neuron row of one latent (canonical latents row); exact panels under EXTRA."""
    hist, logits = latent["hist"] or {}, latent["logits"] or {}
    logit_hist = logits.get("hist") or {}
    pos, neg = logits.get("pos") or [], logits.get("neg") or []
    aligned, correlated = latent["aligned"] or [], latent["correlated"] or []
    return {
        "modelId": source.model_id, "layer": source.name, "index": str(latent["index"]),
        "maxActApprox": latent["max_act"], "creatorId": CREATOR, "frac_nonzero": latent["frac_nonzero"] or 0.0,  # NOT NULL in Neuronpedia
        "freq_hist_data_bar_heights": hist.get("counts", []), "freq_hist_data_bar_values": _centers(hist.get("edges", [])),
        "logits_hist_data_bar_heights": logit_hist.get("counts", []),
        "logits_hist_data_bar_values": _centers(logit_hist.get("edges", [])),
        "neuron_alignment_indices": [int(i) for i, _ in aligned], "neuron_alignment_values": [v for _, v in aligned],
        "neuron_alignment_l1": [], "correlated_neurons_indices": [int(i) for i, _ in correlated],
        "correlated_neurons_pearson": [v for _, v in correlated], "correlated_neurons_l1": [],
        "decoder_weights_dist": [], "pos_str": text.many([int(t) for t, _ in pos]), "pos_values": [v for _, v in pos],
        "neg_str": text.many([int(t) for t, _ in neg]), "neg_values": [v for _, v in neg],
        "sourceSetName": source_set_name(source.name), "topkCosSimIndices": [], "topkCosSimValues": [],
        "vector": [], "vectorLabel": None, "hookName": source.hook_name, "vectorDefaultSteerStrength": 10,
        "hasVector": False,
        EXTRA: {k: latent[k] for k in ("max_act", "frac_nonzero", "mean_act", "hist", "logits", "aligned", "correlated")},
    }  # fmt: skip


def activation_row(example: dict[str, Any], max_act: float | None) -> dict[str, Any]:
    """An Activation row of one example (canonical examples row): tokens as text, one row per
    example; quantile samples carry their interval of (0, max] as binMin/binMax."""
    values = example["values"]
    top = example["kind"] == 0
    width = (max_act or 0.0) / 10
    return {
        "id": f"{example['source']}-{example['index']}-{example['kind']}-{example['group']}-{example['rank']}",
        "modelId": example["model"], "layer": example["source"], "index": str(example["index"]),
        "creatorId": CREATOR, "dataSource": "latentpedia", "dataIndex": str(example["window"]),
        "tokens": example["tokens"], "values": values, "maxValue": example["max_value"],
        "minValue": min(values) if values else 0.0, "maxValueTokenIndex": example["max_pos"],
        "dfaValues": [], "dfaMaxValue": None, "dfaTargetIndex": None, "binContains": None,
        "binMin": None if top else example["group"] * width, "binMax": None if top else (example["group"] + 1) * width,
        EXTRA: {k: example[k] for k in ("kind", "group", "rank", "window", "token_ids")},
    }  # fmt: skip


def explanation_rows(tables: ExplanationRows) -> Iterator[dict[str, Any]]:
    """Explanation rows, each with its scores and votes under EXTRA."""
    key = lambda row: (row["index"], row["ordinal"])  # noqa: E731
    scores = {k: list(g) for k, g in groupby(sorted(tables.scores, key=key), key=key)}
    votes = {k: list(g) for k, g in groupby(tables.votes, key=key)}
    for row in tables.explanations:
        ref = key(row)
        yield {
            "id": f"{row['source']}-{row['index']}-{row['ordinal']}", "modelId": row["model"], "layer": row["source"],
            "index": str(row["index"]), "authorId": CREATOR, "description": row["text"], "embedding": None,
            "typeName": row["method"], "explanationModelName": row["explainer_model"],
            "umap_x": None, "umap_y": None, "umap_cluster": None, "umap_log_feature_sparsity": None,
            EXTRA: {
                "ordinal": row["ordinal"], "prompt_version": row["prompt_version"], "author": row["author"],
                "details": row["details"], "scores": [_score_extra(s) for s in scores.get(ref, [])],
                "votes": [[v["user"], v["value"]] for v in votes.get(ref, [])],
            },
        }  # fmt: skip


def _score_extra(score: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in score.items() if k not in ("model", "source", "index", "ordinal")}


def _batched(rows: Iterator[dict[str, Any]], size_of: Callable[[dict[str, Any]], int]) -> Iterator[list[dict[str, Any]]]:
    """Consecutive rows grouped by `size_of(row) // BATCH` (a batch number)."""
    for _, group in groupby(rows, key=lambda row: size_of(row) // BATCH):
        yield list(group)


class NeuronpediaExporter:
    """Writes the selected sources of a store under `out` in Neuronpedia's layout."""

    def __init__(self, store: Store, out: Path, log: Callable[[str], None] = print):
        self.reader, self.out, self.log = AtlasReader(store), Path(out), log

    def run(self, models: list[str] | None = None, sources: list[str] | None = None) -> dict[str, int]:
        selected = self.reader.selected_sources(models, sources)
        self._write_config(selected)
        counts = {"sources": 0, "features": 0, "activations": 0, "explanations": 0}
        for model_id in sorted({s.model_id for s in selected}):
            self._write_vocab(model_id)
        for source in selected:
            for table, n in self._write_source(source).items():
                counts[table] += n
            counts["sources"] += 1
        return counts

    def _write_vocab(self, model_id: str) -> None:
        folder = self.out / model_id
        folder.mkdir(parents=True, exist_ok=True)
        partial = folder / (VOCAB_FILE + ".partial")
        with gzip.open(partial, "wt", encoding="utf-8") as out:
            json.dump(self.reader.store.get_vocab(model_id), out, ensure_ascii=False)
        partial.replace(folder / VOCAB_FILE)

    def _write_config(self, selected: list[SourceRecord]) -> None:
        folder = self.out / "config"
        folder.mkdir(parents=True, exist_ok=True)
        methods = sorted({row["method"] for s in selected for row in self.reader.explanations(s).explanations})
        rows = {name: [] for name in CONFIG_FILES}
        rows["explanation_type"] = [{"name": m, "displayName": m, "description": f"latentpedia explainer {m}",
                                     "creatorName": CREATOR, "creatorId": CREATOR} for m in methods]  # fmt: skip
        for name, content in rows.items():
            write_rows(folder / f"{name}.jsonl", content)

    def _write_source(self, source: SourceRecord) -> dict[str, int]:
        folder = self.out / source.model_id / source.name
        for table in ("features", "activations", "explanations"):
            (folder / table).mkdir(parents=True, exist_ok=True)
        self._write_headers(source, folder)
        text = self.reader.token_text(source.model_id)
        latents = list(self.reader.latents(source))
        max_act = {row["index"]: row["max_act"] for row in latents}
        counts = {"features": 0, "activations": 0, "explanations": 0}
        for n, batch in enumerate(_batched(iter(latents), lambda row: row["index"])):
            counts["features"] += write_rows(folder / "features" / f"batch-{n}.jsonl.gz",
                                             (feature_row(row, source, text) for row in batch))  # fmt: skip
        examples = (activation_row(e, max_act.get(e["index"])) for e in self.reader.examples(source))
        for n, batch in enumerate(_batched(examples, lambda row: int(row["index"]))):
            counts["activations"] += write_rows(folder / "activations" / f"batch-{n}.jsonl.gz", batch)
        numbered = enumerate(explanation_rows(self.reader.explanations(source)))
        for n, group in groupby(numbered, key=lambda item: item[0] // BATCH):
            counts["explanations"] += write_rows(folder / "explanations" / f"batch-{n}.jsonl.gz", (r for _, r in group))
        self.log(f"{folder}: {counts['features']} features, {counts['activations']} activations, "
                 f"{counts['explanations']} explanations")  # fmt: skip
        return counts

    def _write_headers(self, source: SourceRecord, folder: Path) -> None:
        model = self.reader.model_row(source.model_id)
        write_rows(folder / "model.jsonl", [{
            "id": source.model_id, "displayName": source.model_id, "displayNameShort": source.model_id,
            "creatorId": CREATOR, "owner": CREATOR, "layers": model["n_layers"], "neuronsPerLayer": model["d_mlp"],
            "dimension": model["d_model"], "visibility": "PUBLIC", "inferenceEnabled": False,
            EXTRA: {k: model[k] for k in ("family", "d_mlp", "vocab_size", "bos_id", "spec", "vocab_sha256")},
        }])  # fmt: skip
        write_rows(folder / "source.jsonl", [{
            "id": source.name, "modelId": source.model_id, "setName": source_set_name(source.name),
            "hasDashboards": True, "inferenceEnabled": False, "visibility": "PUBLIC", "creatorId": CREATOR,
            "num_tokens_in_prompt": None, "dataset": None, "notes": None,
            EXTRA: self.reader.source_row(source),
        }])  # fmt: skip
        write_rows(folder / "sourceset.jsonl", [{
            "modelId": source.model_id, "name": source_set_name(source.name), "hasDashboards": True,
            "visibility": "PUBLIC", "description": f"{source.kind} latents at {source.hook_name}",
            "type": source.kind, "creatorName": CREATOR, "creatorId": CREATOR,
        }])  # fmt: skip
