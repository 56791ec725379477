"""A small Neuronpedia dataset export written from Neuronpedia's documented schema (the Prisma
models Neuron, Activation, Explanation, Source, Model and the columns its export-data.py
writes), with no network: model `gpt2-small`, source `6-res-jb`, four latents.

`write_export(root)` writes the layout; `EXPECTED` holds what an import must make of it.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

MODEL, SOURCE = "gpt2-small", "6-res-jb"
D_SAE = 24576  # saelensConfig.d_sae: the source's width, larger than the exported latents
TOKENS = ["<|endoftext|>", " The", " cat", " sat", " on", " the", " mat"]
SHORT = ["<|endoftext|>", " Hello", " world"]


def _neuron(index: int, **fields: Any) -> dict[str, Any]:
    row = {
        "modelId": MODEL, "layer": SOURCE, "index": str(index), "maxActApprox": 2.0 + index,
        "creatorId": "clsxqq2xd0000vvp2k5itlhqj", "frac_nonzero": 0.001 * (index + 1),
        "freq_hist_data_bar_heights": [5, 3, 1], "freq_hist_data_bar_values": [0.5, 1.5, 2.5],
        "logits_hist_data_bar_heights": [1, 2], "logits_hist_data_bar_values": [-0.25, 0.25],
        "neuron_alignment_indices": [3, 1], "neuron_alignment_values": [0.9, -0.4], "neuron_alignment_l1": [0.5, 0.2],
        "correlated_neurons_indices": [], "correlated_neurons_pearson": [], "correlated_neurons_l1": [],
        "decoder_weights_dist": [], "neg_str": [" dog"], "neg_values": [-0.7], "pos_str": [" cat", " mat"],
        "pos_values": [1.25, 0.5], "sourceSetName": "res-jb", "topkCosSimIndices": [], "topkCosSimValues": [],
        "vector": [], "vectorLabel": None, "hookName": "blocks.6.hook_resid_pre", "vectorDefaultSteerStrength": 10,
        "hasVector": False,
    }  # fmt: skip
    return {**row, **fields}


def _activation(index: int, n: int, tokens: list[str], values: list[float], **fields: Any) -> dict[str, Any]:
    peak = max(range(len(values)), key=values.__getitem__)
    row = {
        "id": f"act{index}x{n}", "modelId": MODEL, "layer": SOURCE, "index": str(index),
        "creatorId": "clsxqq2xd0000vvp2k5itlhqj", "dataSource": "Skylion007/openwebtext", "tokens": tokens,
        "maxValue": values[peak], "minValue": min(values), "values": values, "maxValueTokenIndex": peak,
        "dfaValues": [], "dfaMaxValue": None, "dfaTargetIndex": None, "binContains": None, "binMin": -1,
        "binMax": None,
    }  # fmt: skip
    return {**row, **fields}


def _explanation(index: int, text: str) -> dict[str, Any]:
    return {
        "id": f"exp{index}", "modelId": MODEL, "layer": SOURCE, "index": str(index), "authorId": "cljj57d3c000076ei38vwnv35",
        "description": text, "embedding": None, "typeName": "oai_token-act-pair", "explanationModelName": "gpt-4o-mini",
        "umap_x": None, "umap_y": None, "umap_cluster": None, "umap_log_feature_sparsity": None,
    }  # fmt: skip


def rows() -> dict[str, list[dict[str, Any]]]:
    """The export's rows by table."""
    features = [_neuron(i) for i in range(4)]
    activations = [
        _activation(0, 0, TOKENS, [0, 0, 3.0, 0.5, 0, 0, 1.0]),  # top, rank 0
        _activation(0, 1, SHORT, [0, 0.25, 2.0]),  # top, rank 1 (a shorter window: padded)
        _activation(0, 2, TOKENS, [0, 0.5, 0, 0, 0, 0, 0], binMin=0.0, binMax=0.6),  # quantile group 0
        _activation(0, 3, TOKENS, [0, 0, 0, 0, 0, 1.5, 0], binMin=1.2, binMax=1.8),  # quantile group 1
        _activation(2, 0, SHORT, [0, 4.0, 0]),
    ]
    explanations = [_explanation(0, "cats and mats"), _explanation(2, "greetings")]
    return {"features": features, "activations": activations, "explanations": explanations}


def _write_jsonl(path: Path, content: list[dict[str, Any]], *, gz: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(row) + "\n" for row in content)
    if gz:
        path.write_bytes(gzip.compress(text.encode("utf-8")))
    else:
        path.write_text(text, encoding="utf-8")


def write_export(root: Path, tables: dict[str, list[dict[str, Any]]] | None = None) -> Path:
    """Write the export under `root` (root/gpt2-small/6-res-jb/...); returns the source folder."""
    folder = root / MODEL / SOURCE
    _write_jsonl(folder / "model.jsonl", [{"id": MODEL, "displayName": "GPT2-Small", "creatorId": "x",
                                            "layers": 12, "neuronsPerLayer": 3072, "dimension": 768,
                                            "owner": "OpenAI", "visibility": "PUBLIC"}], gz=False)  # fmt: skip
    _write_jsonl(folder / "source.jsonl", [{"id": SOURCE, "modelId": MODEL, "setName": "res-jb", "creatorId": "x",
                                             "hasDashboards": True, "num_prompts": 24576, "num_tokens_in_prompt": 128,
                                             "saelensConfig": {"d_in": 768, "d_sae": D_SAE, "hook_name": "blocks.6.hook_resid_pre"}}],
                 gz=False)  # fmt: skip
    _write_jsonl(folder / "sourceset.jsonl", [{"modelId": MODEL, "name": "res-jb", "description": "Joseph Bloom's SAEs",
                                                "creatorName": "Joseph Bloom", "creatorId": "x"}], gz=False)  # fmt: skip
    for table, content in (tables or rows()).items():
        _write_jsonl(folder / table / "batch-0.jsonl.gz", content, gz=True)
    return folder
