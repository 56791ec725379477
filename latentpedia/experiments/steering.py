"""Steering: push a model's residual stream along latents' decoder directions (or raw vectors)
while it generates, and compare with the default completion sampled with the same seed.

A `Steer` is (hook, vector, strength). With `normalize` the vector is rescaled to unit norm
first, so strength is in units of the residual stream's own scale. Methods, with û = v/|v| and
c = x·û the activation's component along the direction:

    additive     x + strength * v                              (strength 0: unchanged)
    orthogonal   x + strength * c * û: the component along û rescaled by (1 + strength)
                 (0: unchanged, -1: removed, 1: doubled; the orthogonal part is untouched)
    projection_cap   the component c clamped at strength*|v|: raised to at least it when
                 strength > 0 (a floor), lowered to at most it when strength < 0 (a ceiling)

Steering applies at every position (prompt and generated tokens) or at chosen absolute
positions. Generation is a manual loop over the KV cache: the prompt runs once, then one new
token per step; the hook knows each step's absolute positions, so steering of generated tokens
is applied exactly once, where they enter the model, and cached keys/values stay consistent.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import torch

from latentpedia.errors import InvalidInputError
from latentpedia.experiments.common import (
    Latent,
    check_finite,
    check_positions,
    check_vector,
    prompt_ids,
)
from latentpedia.models.hooks import HookFn, hooks

if TYPE_CHECKING:
    from latentpedia.models.loader import LoadedModel

METHODS = ("additive", "orthogonal", "projection_cap")
TYPES = ("STEERED", "DEFAULT")
MAX_NEW_TOKENS = 256


@dataclass
class Steer:
    """Add `strength * vector` (per `method`) at hook `hook`."""

    hook: str
    vector: torch.Tensor
    strength: float
    label: str = "vector"

    @classmethod
    def from_latent(cls, latent: Latent, strength: float) -> Steer:
        return cls(latent.source.output_hook, latent.direction(), strength, latent.label)

    @classmethod
    def from_vector(cls, hook: str, values: list[float], strength: float, label: str = "vector") -> Steer:
        """A raw direction given as numbers (an API caller's vector)."""
        return cls(hook, torch.tensor(values, dtype=torch.float32), strength, label)


@dataclass
class SteerConfig:
    """How to steer and how to sample (one config for the steered and the default run)."""

    method: str = "additive"
    normalize: bool = False
    positions: list[int] | None = None  # absolute token positions; None = all (incl. generated)
    n_tokens: int = 32
    temperature: float = 0.0  # 0 = greedy
    seed: int = 0
    freq_penalty: float = 0.0
    strength_multiplier: float = 1.0
    stop_at_eos: bool = True
    types: list[str] = field(default_factory=lambda: list(TYPES))

    def validate(self) -> None:
        if self.method not in METHODS:
            raise InvalidInputError(f"unknown steering method {self.method!r}; choose one of {', '.join(METHODS)}")
        if not 1 <= self.n_tokens <= MAX_NEW_TOKENS:
            raise InvalidInputError(f"n_tokens must be between 1 and {MAX_NEW_TOKENS}, got {self.n_tokens}")
        if check_finite("temperature", self.temperature) < 0:
            raise InvalidInputError("temperature must be >= 0")
        check_finite("freq_penalty", self.freq_penalty)
        check_finite("strength_multiplier", self.strength_multiplier)
        unknown = [t for t in self.types if t not in TYPES]
        if unknown or not self.types:
            raise InvalidInputError(f"types must be a non-empty subset of {list(TYPES)}, got {self.types}")


# ---------------------------------------------------------------------------- the edit


def steer_delta(x: torch.Tensor, vector: torch.Tensor, strength: float, method: str) -> torch.Tensor:
    """What steering adds to activations `x` [..., d] (same shape as x)."""
    v = vector.to(x.dtype)
    if method == "additive":
        return (strength * v).expand_as(x)
    unit = v / v.norm().clamp_min(1e-12)
    component = x @ unit  # [...]
    if method == "orthogonal":
        return (strength * component)[..., None] * unit
    target = strength * v.norm()
    capped = component.clamp(min=target) if strength > 0 else component.clamp(max=target)
    return (capped - component)[..., None] * unit


def steering_hooks(
    steers: Sequence[Steer], config: SteerConfig, offset: dict[str, int]
) -> dict[str, HookFn]:
    """{hook: fn} applying every steer; `offset["start"]` is the absolute position of the
    first token of the current forward call (set by the generation loop)."""
    by_hook: dict[str, list[Steer]] = {}
    for steer in steers:
        by_hook.setdefault(steer.hook, []).append(steer)
    wanted = None if config.positions is None else torch.tensor(config.positions)

    def make(group: list[Steer]) -> HookFn:
        def fn(x: torch.Tensor) -> torch.Tensor:
            delta = sum(steer_delta(x, s.vector, s.strength * config.strength_multiplier, config.method) for s in group)
            if wanted is not None:
                absolute = torch.arange(offset["start"], offset["start"] + x.shape[1])
                delta = delta * torch.isin(absolute, wanted).to(x.dtype)[None, :, None]
            return x + delta

        return fn

    return {hook: make(group) for hook, group in by_hook.items()}


def prepare_steers(m: LoadedModel, steers: Sequence[Steer], normalize: bool) -> list[Steer]:
    """Validated copies: hooks exist, widths match, strengths finite, vectors non-zero."""
    if not steers:
        raise InvalidInputError("nothing to steer with: give at least one feature or vector")
    out = []
    for steer in steers:
        vector = check_vector(m, steer.hook, steer.vector)
        strength = check_finite(f"strength of {steer.label}", steer.strength)
        norm = float(vector.norm())
        if norm == 0:
            raise InvalidInputError(f"the direction of {steer.label} is zero")
        out.append(Steer(steer.hook, vector / norm if normalize else vector, strength, steer.label))
    return out


# ---------------------------------------------------------------------------- generation


def _next_token(logits: torch.Tensor, counts: torch.Tensor, config: SteerConfig, gen: torch.Generator) -> int:
    logits = logits.float() - config.freq_penalty * counts
    if config.temperature == 0:
        return int(logits.argmax())
    probs = torch.softmax(logits / config.temperature, dim=-1)
    return int(torch.multinomial(probs, 1, generator=gen))


def generate(
    m: LoadedModel,
    ids: Sequence[int],
    config: SteerConfig,
    steers: Sequence[Steer] = (),
) -> Iterator[int]:
    """Yield `config.n_tokens` sampled token ids (fewer if EOS), steered by `steers` if any.

    Same `config.seed` and no steers (or strength 0) -> the same tokens every time.
    """
    gen = torch.Generator().manual_seed(int(config.seed))
    offset = {"start": 0}
    fns = steering_hooks(steers, config, offset) if steers else {}
    counts = torch.zeros(m.vocab_size)
    eos = getattr(m.tokenizer, "eos_token_id", None) if config.stop_at_eos else None
    step_ids = torch.tensor([list(ids)], dtype=torch.long, device=m.hf.device)
    past = None
    for _ in range(config.n_tokens):
        with torch.inference_mode(), hooks(m, fns):
            out = m.hf(input_ids=step_ids, past_key_values=past, use_cache=True, logits_to_keep=1)
        past = out.past_key_values
        offset["start"] += step_ids.shape[1]
        token = _next_token(out.logits[0, -1], counts, config, gen)
        counts[token] += 1
        yield token
        if token == eos:
            return
        step_ids = torch.tensor([[token]], dtype=torch.long, device=m.hf.device)


@dataclass
class Completion:
    type: str  # "STEERED" | "DEFAULT"
    tokens: list[int]
    text: str


def _decode(m: LoadedModel, tokens: list[int]) -> str:
    return m.tokenizer.decode(tokens) if m.tokenizer is not None else " ".join(map(str, tokens))


def steer_stream(
    m: LoadedModel, prompt: str | Sequence[int], steers: Sequence[Steer], config: SteerConfig
) -> Iterator[dict]:
    """Events for streaming, the requested types interleaved token by token:
    {"type", "token", "text" (the completion so far, decoded)}; then one
    {"type", "done": True, "tokens", "text"} per type. Validates everything before yielding."""
    config.validate()
    ids = prompt_ids(m, prompt)
    config = replace(config, positions=check_positions(config.positions, len(ids), allow_beyond=True))
    steers = prepare_steers(m, steers, config.normalize)
    runs = {t: generate(m, ids, config, steers if t == "STEERED" else ()) for t in config.types}
    tokens: dict[str, list[int]] = {t: [] for t in runs}
    while runs:
        for kind in list(runs):
            token = next(runs[kind], None)
            if token is None:
                del runs[kind]
                yield {"type": kind, "done": True, "tokens": tokens[kind], "text": _decode(m, tokens[kind])}
                continue
            tokens[kind].append(token)
            yield {"type": kind, "token": token, "text": _decode(m, tokens[kind])}


def steer(m: LoadedModel, prompt: str | Sequence[int], steers: Sequence[Steer], config: SteerConfig) -> list[Completion]:
    """Steered and/or default completions of `prompt` (as `config.types` asks), same seed."""
    done = [e for e in steer_stream(m, prompt, steers, config) if e.get("done")]
    return [Completion(e["type"], e["tokens"], e["text"]) for e in done]
