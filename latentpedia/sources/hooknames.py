"""Turn the hook descriptions other tools store into our TransformerLens-style hook names.

sparsify names a hookpoint by its module path ("layers.6", "layers.6.mlp", "gpt_neox.layers.6"),
dictionary_learning by a submodule name ("resid_post_layer_3"), Gemma Scope by its folder layout
("gemma-scope-2b-pt-res/layer_12/width_16k/...", "resid_post/layer_12_width_16k_l0_medium"),
Gemma Scope 2's config by a HF module path ("model.layers.12.output"). Each function returns
`(hook_name, output_hook)` (output_hook None for SAEs) or None when it cannot tell.

Transcoders read the MLP's (normalized) input: `blocks.L.ln2.hook_normalized`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

Hooks = tuple[str, str | None]

_TL_HOOK = re.compile(
    r"blocks\.\d+\.(hook_resid_(pre|mid|post)|hook_(attn|mlp)_out|mlp\.hook_(pre|post)"
    r"|attn\.hook_z|ln2\.hook_normalized)"
)
_MODULE = re.compile(r"^(?:[A-Za-z_]\w*\.)*?(?:layers|h|blocks|layer)\.(\d+)(?:\.(.+))?$")
_MODULE_SITES = {
    None: "hook_resid_post",
    "mlp": "hook_mlp_out",
    "self_attn": "hook_attn_out",
    "attn": "hook_attn_out",
    "attention": "hook_attn_out",
}
_SUBMODULE = re.compile(r"(resid_post|resid_out|resid_pre|resid_mid|mlp_out|attn_out)_?layer_?(\d+)")
_SUBMODULE_SITES = {
    "resid_post": "hook_resid_post",
    "resid_out": "hook_resid_post",
    "resid_pre": "hook_resid_pre",
    "resid_mid": "hook_resid_mid",
    "mlp_out": "hook_mlp_out",
    "attn_out": "hook_attn_out",
}


def transcoder_hooks(layer: int) -> Hooks:
    """A layer's MLP transcoder: reads the normalized MLP input, writes the MLP output."""
    return f"blocks.{layer}.ln2.hook_normalized", f"blocks.{layer}.hook_mlp_out"


def from_tl_name(name: str) -> str | None:
    """`name` itself when it already is one of our hook names."""
    return name if _TL_HOOK.fullmatch(name) else None


def from_module_path(path: str, *, transcode: bool = False) -> Hooks | None:
    """sparsify hookpoints: "layers.6" -> resid_post, "layers.6.mlp" -> mlp_out, ".self_attn"."""
    if tl := from_tl_name(path):
        return tl, None
    match = _MODULE.match(path)
    if not match:
        return None
    layer, site = int(match.group(1)), match.group(2)
    if transcode:
        return transcoder_hooks(layer) if site == "mlp" else None
    hook = _MODULE_SITES.get(site)
    return (f"blocks.{layer}.{hook}", None) if hook else None


def from_submodule_name(names: Iterable[str], layer: int | None = None) -> Hooks | None:
    """dictionary_learning: "resid_post_layer_3" / "mlp_out_layer3" (first name that parses)."""
    for name in names:
        if tl := from_tl_name(name):
            return tl, None
        match = _SUBMODULE.search(name or "")
        if match:
            return f"blocks.{match.group(2)}.{_SUBMODULE_SITES[match.group(1)]}", None
    return None


_GS_RELEASE = re.compile(r"gemma-scope-(?:2-)?.*?-(res|mlp|att|transcoders?)(?:-|$)")
_GS_SITE_DIR = re.compile(r"^(resid_post(?:_all)?|mlp_out(?:_all)?|attn_out(?:_all)?|transcoders?(?:_all)?)$")
_GS_SITES = {"res": "resid_post", "mlp": "mlp_out", "att": "attn_out", "transcoder": "transcoder",
             "transcoders": "transcoder"}


def _gemma_scope_site(parts: list[str]) -> str | None:
    """"resid_post" | "mlp_out" | "attn_out" | "transcoder" from folder names, innermost first."""
    for part in reversed(parts):
        if match := _GS_SITE_DIR.match(part):
            return match.group(1).removesuffix("_all").removesuffix("s")
        if "transcoder" in part and "layer_" in part:
            return "transcoder"
        if match := _GS_RELEASE.search(part.replace("--", "/").split("/")[-1]):
            return _GS_SITES[match.group(1)]
    return None


def from_gemma_scope_path(path: Path) -> tuple[Hooks | None, str]:
    """Hooks from a Gemma Scope folder path, and how they were found (for the metadata).

    The layer comes from "layer_12"; the site from the release folder ("gemma-scope-2b-pt-res",
    also inside a HF cache name "models--google--gemma-scope-2b-pt-mlp") or the site folder of
    Gemma Scope 2 ("resid_post/", "mlp_out/", "attn_out/", "transcoder/"). Without a site
    marker the residual stream is assumed, Gemma Scope's canonical release.
    """
    parts = list(path.resolve().parts)
    layers = [int(m.group(1)) for part in parts if (m := re.match(r"^layer_(\d+)(?:_|$)", part))]
    if not layers:
        return None, "the folder path, which has no layer_N folder"
    layer, site = layers[-1], _gemma_scope_site(parts)
    how = f"folder path (site {site})" if site else "folder path (no site marker: residual stream assumed)"
    return _gemma_scope_hooks(layer, site or "resid_post"), how


def _gemma_scope_hooks(layer: int, site: str) -> Hooks:
    """Our hook names for a Gemma Scope site; attention SAEs read the concatenated heads."""
    if site == "transcoder":
        return transcoder_hooks(layer)
    hook = {"resid_post": "hook_resid_post", "mlp_out": "hook_mlp_out", "attn_out": "attn.hook_z"}[site]
    return f"blocks.{layer}.{hook}", None


_HF_POINT = re.compile(r"^(?:model\.)?(?:language_model\.)?(?:model\.)?layers\.(\d+)\.(.+)$")
_HF_POINT_SITES = {
    "output": "hook_resid_post",
    "self_attn.o_proj.input": "attn.hook_z",
    "post_feedforward_layernorm.output": "hook_mlp_out",
    "pre_feedforward_layernorm.output": "ln2.hook_normalized",
    "mlp.output": "hook_mlp_out",
}


def from_hf_hook_point(point: str | None) -> str | None:
    """Gemma Scope 2 config: "model.layers.12.output" -> "blocks.12.hook_resid_post"."""
    match = _HF_POINT.match(point or "")
    if not match or match.group(2) not in _HF_POINT_SITES:
        return None
    return f"blocks.{match.group(1)}.{_HF_POINT_SITES[match.group(2)]}"
