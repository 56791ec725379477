"""Source ids: `{layer}-{kind}[-{name}]`, e.g. "6-mlp", "6-res-topk-4k", "12-att-jumprelu-16k"."""

from __future__ import annotations

import re

from latentpedia.sources.base import layer_of

# Hook-name suffix (after "blocks.L.") -> short kind used in ids.
_HOOK_KINDS: tuple[tuple[str, str], ...] = (
    (r"hook_resid_(pre|mid|post)", "res"),
    (r"hook_mlp_out|mlp\.hook_(post|pre)", "mlp"),
    (r"hook_attn_out|attn\.hook_z", "att"),
    (r"ln2\.hook_normalized|hook_mlp_in", "mlpin"),
)


def source_id(layer: int, kind_short: str, name: str | None = None) -> str:
    """`source_id(6, "res", "topk-4k")` -> "6-res-topk-4k"; `source_id(6, "mlp")` -> "6-mlp"."""
    return f"{layer}-{kind_short}" + (f"-{name}" if name else "")


def width_label(n: int) -> str:
    """Latent count as people say it: 4096 -> "4k", 16384 -> "16k", 4608 -> "4.5k", 64 -> "64"."""
    for unit, size in (("m", 1 << 20), ("k", 1 << 10)):
        if n >= size and (n * 2) % size == 0:
            return f"{n / size:g}{unit}"
    if n >= 1000 and n % 1000 == 0:
        return f"{n // 1000}k"
    return str(n)


def hook_kind_short(hook_name: str) -> str:
    """"res" for residual hooks, "mlp" for MLP output / neurons, "att" for attention output."""
    suffix = hook_name.split(".", 2)[-1] if hook_name.startswith("blocks.") else hook_name
    for pattern, kind in _HOOK_KINDS:
        if re.fullmatch(pattern, suffix):
            return kind
    return re.sub(r"[^a-z0-9]+", "", suffix.replace("hook_", "").lower()) or "hook"


def default_source_id(kind: str, hook_name: str, architecture: str, d_sae: int) -> str:
    """Id of an SAE or transcoder from its kind, hook, architecture label and width.

    SAEs: "{layer}-{res|mlp|att}-{arch}-{width}"; transcoders: "{layer}-tc-{arch}-{width}".
    """
    short = "tc" if kind == "transcoder" else hook_kind_short(hook_name)
    return source_id(layer_of(hook_name), short, f"{architecture}-{width_label(d_sae)}")
