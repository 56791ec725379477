"""The LLM explainer: two versioned prompt variants sent to any chat endpoint.

- "tokact" (method "llm-tokact"): OpenAI's format, each example as token<TAB>activation lines
  with activations scaled to integers 0-10 of the latent's max.
- "examples" (method "llm-examples"): the max-activating texts with the peak token marked
  <<like this>>, plus the tokens the latent promotes.
Only the explain set is shown (data.py). The prompt, the raw answer and the examples shown are
kept in `details`; the version string changes whenever a prompt's wording does.
"""

from __future__ import annotations

from typing import Any

from latentpedia.interp.data import SPLIT_RULE, AtlasText, Example, LatentData, show_token
from latentpedia.interp.llm.client import LLMClient, LLMError

VARIANTS = {"tokact": "llm-tokact-v1", "examples": "llm-examples-v1"}  # prompt variant -> prompt_version
METHODS = {name: f"llm-{name}" for name in VARIANTS}  # prompt variant -> explanations.method
N_EXAMPLES = 6
BEFORE, AFTER = 20, 4
SYSTEM = ("You explain what a neuron inside a language model responds to. Answer with one short phrase "
          "(at most 12 words) naming the pattern; no preamble.")  # fmt: skip


def snippet_positions(example: Example, before: int = BEFORE, after: int = AFTER) -> range:
    """Positions shown around the example's peak (never BOS)."""
    start = max(1, example.max_pos - before)
    return range(start, min(len(example.tokens), example.max_pos + after + 1))


def line_token(text: str) -> str:
    """A token's text on one line: newlines and tabs made visible."""
    return text.replace("\n", "\\n").replace("\t", "\\t")


def _scaled(value: float, max_act: float) -> int:
    return 0 if max_act <= 0 or value <= 0 else int(round(min(10.0, 10.0 * value / max_act)))


def tokact_prompt(atlas: AtlasText, latent: LatentData) -> str:
    parts = ["Each example below lists a text one token per line; after the tab is the neuron's activation "
             "on that token, from 0 (none) to 10 (its strongest).\n"]  # fmt: skip
    for n, example in enumerate(latent.explain_top[:N_EXAMPLES], 1):
        lines = [f"{line_token(atlas.token(example.tokens[p]))}\t{_scaled(float(example.values[p]), latent.max_act)}"
                 for p in snippet_positions(example)]  # fmt: skip
        parts.append(f"Example {n}:\n" + "\n".join(lines) + "\n")
    parts.append("In one short phrase: what does this neuron fire on?")
    return "\n".join(parts)


def examples_prompt(atlas: AtlasText, latent: LatentData) -> str:
    parts = ["Texts where the neuron fires most; its strongest token in each is marked <<like this>>.\n"]
    for n, example in enumerate(latent.explain_top[:N_EXAMPLES], 1):
        p = example.max_pos
        positions = snippet_positions(example)
        left = atlas.decode(example.tokens[positions.start : p])
        right = atlas.decode(example.tokens[p + 1 : positions.stop])
        parts.append(f"{n}. {left}<<{atlas.token(example.tokens[p])}>>{right}".replace("\n", " "))
    promoted = [show_token(atlas.token(t)) for t, v in latent.promotes[:8] if v > 0]
    if promoted:
        parts.append("\nTokens it makes more likely next: " + ", ".join(f'"{t}"' for t in promoted))
    parts.append("\nIn one short phrase: what does this neuron fire on?")
    return "\n".join(parts)


PROMPTS = {"tokact": tokact_prompt, "examples": examples_prompt}


def parse_explanation(answer: str) -> str:
    """The first meaningful line of an answer, unquoted; LLMError if there is none."""
    for line in answer.strip().splitlines():
        line = line.strip().strip("*").strip().strip('"').strip("'").strip()
        for prefix in ("Answer:", "Explanation:", "Phrase:"):
            if line.lower().startswith(prefix.lower()):
                line = line[len(prefix) :].strip()
        if len(line) >= 2 and any(c.isalnum() for c in line):
            return line[:200]
    raise LLMError(f"unparsable answer (no explanation in it): {answer[:120]!r}")


def explain_llm(client: LLMClient, atlas: AtlasText, latent: LatentData, variant: str = "examples") -> dict[str, Any]:
    """{"text", "method", "explainer_model", "prompt_version", "details"}; LLMError on failure."""
    if variant not in PROMPTS:
        raise LLMError(f"unknown prompt variant {variant!r}; use one of {sorted(PROMPTS)}")
    if not latent.explain_top:
        raise LLMError("the latent has no top examples to explain")
    prompt = PROMPTS[variant](atlas, latent)
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]
    answer = client.chat_text(messages, max_tokens=40, temperature=0)
    details = {"prompt": prompt, "answer": answer, "split": SPLIT_RULE, "explain_examples": latent.explain_refs()}
    return {"text": parse_explanation(answer), "method": METHODS[variant], "explainer_model": client.model,
            "prompt_version": VARIANTS[variant], "details": details}  # fmt: skip


def explain_many(client: LLMClient, atlas: AtlasText, latents: list[LatentData], variant: str) -> list[dict[str, Any] | str]:
    """`explain_llm` over `latents` with the client's concurrency; a failure becomes its message."""

    def one(latent: LatentData) -> dict[str, Any] | str:
        try:
            return explain_llm(client, atlas, latent, variant)
        except LLMError as err:
            return str(err)

    return client.map(one, latents)


def prompt_for(variant: str, atlas: AtlasText, latent: LatentData) -> str:
    """The user prompt a variant would send (for token estimates)."""
    return SYSTEM + PROMPTS[variant](atlas, latent)
