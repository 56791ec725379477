"""The registries of explainers and scorers: one small class each, one registration line each.

Everything that lists them reads these dicts: `latentpedia explain --explainer/--scorer` (choices
and help), the API's enums (`/openapi.json`), the generated tables in docs/interp.md
(`python -m latentpedia.docgen --write`), and the pipeline that builds them.

    EXPLAINERS["llm"].stored_as("tokact")     # PromptVariant(method="llm-tokact", version="llm-tokact-v1")
    SCORERS["embedding"].build(context)       # an EmbeddingScorer (the `Scorer` protocol, scoring.py)

This module imports nothing heavy (the CLI reads it for --help): the implementations, and the
version strings that live beside the prompts and rules they version, are imported when asked for
(`build`, `version`, `stored_as`); they never import this module. How to add one: docs/interp.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from latentpedia.errors import LatentpediaError
from latentpedia.interp.scoring import TorchRunner

if TYPE_CHECKING:
    from latentpedia.interp.data import AtlasText, LatentData

ExplainFn = Callable[["AtlasText", "list[LatentData]"], "list[dict[str, Any] | str]"]


@dataclass(frozen=True)
class PromptVariant:
    """How an explainer's output is stored: `explanations.method` and `prompt_version`."""

    name: str
    method: str
    version: str
    description: str


@dataclass
class ScorerContext:
    """What a scorer is built with: the source's text, the LLM backend (an LLMClient or an
    in-process LocalLM; None when no LLM scorer runs), the seed, and how to run torch steps."""

    atlas: AtlasText
    backend: Any = None
    seed: int = 0
    on_torch: TorchRunner | None = None


class ExplainerKind:
    """One explainer: its name (CLI/API), prompt variants and what it needs."""

    name: ClassVar[str]
    description: ClassVar[str]
    needs_llm: ClassVar[bool]
    runs_torch: ClassVar[bool]  # in this process, by itself (an LLM backend's torch is the backend's)
    variants: ClassVar[dict[str, str]]  # prompt variant -> what it shows; one entry: nothing to choose

    def variant_name(self, variant: str | None = None) -> str:
        """The variant `variant` selects (explainers with one variant ignore it); LatentpediaError
        naming the choices for an unknown one."""
        names = list(self.variants)
        if len(names) == 1 or variant is None:
            return names[0]
        if variant not in self.variants:
            raise LatentpediaError(f"unknown prompt variant {variant!r} of the {self.name} explainer; use one of {', '.join(names)}")
        return variant

    def stored_as(self, variant: str | None = None) -> PromptVariant:
        """The method and version the variant's explanations are stored with."""
        name = self.variant_name(variant)
        method, version = self._stored(name)
        return PromptVariant(name, method, version, self.variants[name])

    def all_stored(self) -> list[PromptVariant]:
        return [self.stored_as(name) for name in self.variants]

    def _stored(self, variant: str) -> tuple[str, str]:
        """(method, version) from the implementation."""
        raise NotImplementedError

    def build(self, client: Any, variant: str | None) -> ExplainFn:
        """`explain(atlas, latents)` -> one explanation row (or error message) per latent;
        `client`: the LLMClient (None for explainers that need none)."""
        raise NotImplementedError


class OfflineExplainer(ExplainerKind):
    name = "offline"
    description = ("a short label from the tokens carrying the activation mass, the peaks' n-grams and the promoted "
                   "tokens, plus a card (deterministic)")  # fmt: skip
    needs_llm = False
    runs_torch = False
    variants = {"card": "label + card from the explain set's statistics"}

    def _stored(self, variant: str) -> tuple[str, str]:
        from latentpedia.interp.offline import METHOD, VERSION

        return METHOD, VERSION

    def build(self, client: Any, variant: str | None) -> ExplainFn:
        from latentpedia.interp.offline import explain_offline

        return lambda atlas, latents: [explain_offline(atlas, latent) for latent in latents]


class LLMExplainer(ExplainerKind):
    name = "llm"
    description = "asks a chat model (any OpenAI-compatible endpoint) for one short phrase, from the explain set only"
    needs_llm = True
    runs_torch = False
    variants = {
        "examples": "top texts with the peak token marked <<like this>>, plus promoted tokens",
        "tokact": "OpenAI's token<TAB>activation lines, activations scaled 0-10",
    }

    def _stored(self, variant: str) -> tuple[str, str]:
        from latentpedia.interp.llm.explain import METHODS, VARIANTS

        return METHODS[variant], VARIANTS[variant]

    def build(self, client: Any, variant: str | None) -> ExplainFn:
        from latentpedia.interp.llm.explain import explain_many

        if client is None:
            raise LatentpediaError("the llm explainer needs an endpoint: --llm-base-url and --llm-model")
        name = self.variant_name(variant)
        return lambda atlas, latents: explain_many(client, atlas, latents, name)


class ScorerKind:
    """One scorer: its name (CLI/API, `explanation_scores.scorer`) and what it needs; its version
    is its implementation's."""

    name: ClassVar[str]
    description: ClassVar[str]
    needs_llm: ClassVar[bool]
    runs_torch: ClassVar[bool]

    def implementation(self) -> type:
        """The scorer class (imported on demand)."""
        raise NotImplementedError

    @property
    def version(self) -> str:
        return self.implementation().version

    def build(self, context: ScorerContext) -> Any:
        """A scorer for `context.atlas`'s latents (the `Scorer` protocol of scoring.py)."""
        raise NotImplementedError


class EmbeddingScoring(ScorerKind):
    name = "embedding"
    description = "ROC-AUC of all-MiniLM-L6-v2 similarity: held-out top examples vs random corpus snippets (offline)"
    needs_llm = False
    runs_torch = True

    def implementation(self) -> type:
        from latentpedia.interp.embedding import EmbeddingScorer

        return EmbeddingScorer

    def build(self, context: ScorerContext) -> Any:
        from latentpedia.interp.embedding import WorkerEmbedder

        embedder = WorkerEmbedder(context.on_torch) if context.on_torch else None
        return self.implementation()(context.atlas, embedder, seed=context.seed)


class SimulationScoring(ScorerKind):
    name = "simulation"
    description = "an LLM predicts per-token activations from the explanation; Pearson correlation over the pooled tokens"
    needs_llm = True
    runs_torch = False

    def implementation(self) -> type:
        from latentpedia.interp.simulate import SimulationScorer

        return SimulationScorer

    def build(self, context: ScorerContext) -> Any:
        return self.implementation()(context.backend, context.atlas)


class _JudgeScoring(ScorerKind):
    """Detection and fuzzing share one implementation (judge.py), told apart by name."""

    needs_llm = True
    runs_torch = False

    def implementation(self) -> type:
        from latentpedia.interp.judge import JudgeScorer

        return JudgeScorer

    def build(self, context: ScorerContext) -> Any:
        return self.implementation()(self.name, context.backend, context.atlas, seed=context.seed)


class DetectionScoring(_JudgeScoring):
    name = "detection"
    description = "an LLM judges held-out top examples vs random snippets (does it fire here?); balanced accuracy"


class FuzzingScoring(_JudgeScoring):
    name = "fuzzing"
    description = "an LLM judges whether the marked token is the peak or a random other token; balanced accuracy"


_EXPLAINER_CLASSES: tuple[type[ExplainerKind], ...] = (OfflineExplainer, LLMExplainer)
_SCORER_CLASSES: tuple[type[ScorerKind], ...] = (EmbeddingScoring, SimulationScoring, DetectionScoring, FuzzingScoring)

EXPLAINERS: dict[str, ExplainerKind] = {cls.name: cls() for cls in _EXPLAINER_CLASSES}
SCORERS: dict[str, ScorerKind] = {cls.name: cls() for cls in _SCORER_CLASSES}
LLM_SCORERS: frozenset[str] = frozenset(name for name, kind in SCORERS.items() if kind.needs_llm)
# Every prompt variant of every explainer (the API's `variant` values).
VARIANT_NAMES: tuple[str, ...] = tuple(dict.fromkeys(v for e in EXPLAINERS.values() if len(e.variants) > 1 for v in e.variants))


def explainer(name: str) -> ExplainerKind:
    """The explainer registered under `name`; LatentpediaError naming the choices otherwise."""
    found = EXPLAINERS.get(name)
    if found is None:
        raise LatentpediaError(f"unknown explainer {name!r}; use one of {', '.join(EXPLAINERS)}")
    return found


def scorers(names: Iterable[str]) -> list[ScorerKind]:
    """The scorers registered under `names` (in order, each once); LatentpediaError for an unknown one."""
    out = []
    for name in dict.fromkeys(names):
        if name not in SCORERS:
            raise LatentpediaError(f"unknown scorer {name!r}; use some of {', '.join(SCORERS)}")
        out.append(SCORERS[name])
    return out


def parse_scorers(text: str) -> list[str]:
    """`"embedding, simulation"` -> ["embedding", "simulation"], checked against the registry."""
    return [kind.name for kind in scorers(s.strip() for s in text.split(",") if s.strip())]


def needs_llm(explainer_name: str | None, scorer_names: Iterable[str]) -> bool:
    """Whether this explainer (None: no explaining) or any of these scorers needs an LLM endpoint."""
    wanted = [explainer(explainer_name)] if explainer_name else []
    return any(kind.needs_llm for kind in [*wanted, *scorers(scorer_names)])


def choices_help(registry: dict[str, Any]) -> str:
    """`offline | llm` style list of a registry's names (for --help)."""
    return " | ".join(registry)


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _md(text: str) -> str:
    """Text for a Markdown table cell (angle brackets are not HTML)."""
    return text.replace("<", "\\<").replace(">", "\\>")


def docs_tables() -> str:
    """The Markdown tables of docs/interp.md (generated; see latentpedia/cli/docs.py)."""
    lines = ["| explainer | `--variant` | stored `method` | `prompt_version` | needs an LLM | runs torch | what it does |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for kind in EXPLAINERS.values():
        for v in kind.all_stored():
            several = len(kind.variants) > 1
            variant, what = (f"`{v.name}`", f"{kind.description}; prompt: {v.description}") if several else ("–", kind.description)
            lines.append(f"| `{kind.name}` | {variant} | `{v.method}` | `{v.version}` | {_yes(kind.needs_llm)} "
                         f"| {_yes(kind.runs_torch)} | {_md(what)} |")  # fmt: skip
    lines += ["", "| scorer | version | needs an LLM | runs torch | what it measures |", "|---|---|---|---|---|"]
    for kind in SCORERS.values():
        lines.append(f"| `{kind.name}` | `{kind.version}` | {_yes(kind.needs_llm)} | {_yes(kind.runs_torch)} | {_md(kind.description)} |")
    return "\n".join(lines)
