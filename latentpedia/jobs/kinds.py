"""The kinds of job the queue runs, one typed request each (what `POST /api/jobs` takes).

Torch-free: the web imports this module to validate requests; the worker (jobs/worker.py) runs
them through the same functions the CLI calls (jobs/run.py). A request is stored as its JSON
(`job_tasks.params`) and read back with `parse_request`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from latentpedia.config import DEFAULT_MODEL_ID
from latentpedia.dashboards import defaults
from latentpedia.errors import InvalidInputError
from latentpedia.interp.registry import EXPLAINERS, SCORERS

Name = Annotated[str, Field(min_length=1, max_length=300)]
ExplainerName = Literal[tuple(EXPLAINERS)]  # type: ignore[valid-type]
ScorerName = Literal[tuple(SCORERS)]  # type: ignore[valid-type]
MAX_TOKENS = 100_000_000


class _Job(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: Name = Field(DEFAULT_MODEL_ID, description="a model of the atlas, the embedded default, or a model folder on the server")

    def target(self) -> str:
        """What the job works on, in words (the jobs table's `target`)."""
        raise NotImplementedError


class BuildJob(_Job):
    """`latentpedia build`: dashboards for every latent of the sources."""

    kind: Literal["build"] = "build"
    sources: list[Name] = Field(min_length=1, max_length=64, description="'6-mlp' or a server path to an SAE folder")
    corpus: Name = Field("default", description="'default', 'atlas' (the atlas's corpus) or a server path")
    tokens: int = Field(500_000, ge=1, le=MAX_TOKENS)
    window: int = Field(128, ge=2, le=4096)
    batch_size: int = Field(8, ge=1, le=1024)
    checkpoint_seconds: float = Field(60.0, ge=0, le=86_400)
    rebuild: bool = False

    def target(self) -> str:
        return f"{self.model}: {', '.join(self.sources)}"


class ImportSaeJob(_Job):
    """`latentpedia import-sae`: an SAE folder (a server path, or an uploaded zip) into the atlas."""

    kind: Literal["import-sae"] = "import-sae"
    path: Name = Field(description="an SAE folder or file on the server (an upload is stored as one)")
    name: Annotated[str, Field(min_length=1, max_length=200)] | None = Field(None, description="source id (default: derived)")
    hook: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    tokens: int = Field(500_000, ge=1, le=MAX_TOKENS, description="tokens to build over when the atlas has no corpus")
    eval_tokens: int = Field(8192, ge=0, le=1_000_000, description="tokens to evaluate the SAE on (0: skip)")

    def target(self) -> str:
        return f"{self.model}: {self.name or self.path}"


class TrainSaeJob(_Job):
    """`latentpedia train-sae`: SAEs on the atlas's cached activations, added to the atlas."""

    kind: Literal["train-sae"] = "train-sae"
    hooks: list[Name] = Field(min_length=1, max_length=16)
    widths: list[Annotated[int, Field(ge=1, le=1_048_576)]] = Field([4608], min_length=1, max_length=8)
    architecture: Literal["topk", "batchtopk", "jumprelu", "relu"] = "topk"
    k: int = Field(32, ge=1, le=4096)
    tokens: int = Field(200_000, ge=1, le=MAX_TOKENS)
    batch_size: int = Field(1024, ge=1, le=65_536)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    eval_tokens: int = Field(8192, ge=0, le=1_000_000)

    def target(self) -> str:
        return f"{self.model}: {self.architecture} on {', '.join(self.hooks)} x {', '.join(map(str, self.widths))}"


class ExplainJob(_Job):
    """`latentpedia explain`: explain latents of built sources, then score the explanations."""

    kind: Literal["explain"] = "explain"
    sources: list[Name] = Field(default_factory=list, max_length=64, description="empty: every built source")
    explainer: ExplainerName = "offline"
    scorers: list[ScorerName] = Field(default_factory=lambda: ["embedding"], max_length=len(SCORERS))
    limit: int | None = Field(None, ge=1, le=10_000_000, description="latents per source (the first N)")

    def target(self) -> str:
        return f"{self.model}: {', '.join(self.sources) or 'every source'} ({self.explainer})"


class ScoreJob(_Job):
    """Score the latents that already have an explanation (`explainer`'s, made where missing);
    latents without any explanation are left alone."""

    kind: Literal["score"] = "score"
    sources: list[Name] = Field(default_factory=list, max_length=64, description="empty: every built source")
    explainer: ExplainerName = Field("offline", description="whose explanations to score")
    scorers: list[ScorerName] = Field(min_length=1, max_length=len(SCORERS))
    limit: int | None = Field(None, ge=1, le=10_000_000)

    def target(self) -> str:
        return f"{self.model}: {', '.join(self.sources) or 'every source'} ({', '.join(self.scorers)})"


DEMO_STAGES = ("neurons", "saes", "families", "explain")  # in build order (jobs/demo.py)


class DemoJob(_Job):
    """A stage of the default atlas (`latentpedia demo`, jobs/demo.py): what `demo` queues after
    serving its first slice. A stage first runs every earlier stage the atlas still lacks."""

    kind: Literal["demo"] = "demo"
    stage: Literal[DEMO_STAGES] = Field("explain", description="neurons (full token budget), saes, families or explain")  # type: ignore[valid-type]
    layers: list[Annotated[int, Field(ge=0, le=1000)]] = Field(default_factory=lambda: list(defaults.NEURON_LAYERS), min_length=1, max_length=64,
                                                                 description="neuron layers")  # fmt: skip
    saes: list[tuple[Name, Annotated[int, Field(ge=1, le=1_048_576)]]] = Field(
        default_factory=lambda: list(defaults.SAE_PAIRS), max_length=16, description="(hook, width) SAEs to train; empty: none")
    tokens: int = Field(defaults.N_TOKENS, ge=1, le=MAX_TOKENS, description="tokens of the neuron pass")
    cache_tokens: int = Field(defaults.CACHE_TOKENS, ge=1, le=MAX_TOKENS, description="residual-stream tokens cached for SAE training")
    sae_tokens: int = Field(defaults.SAE_TOKENS, ge=1, le=MAX_TOKENS, description="SAE training tokens")
    explain: bool = Field(True, description="offline explanations + embedding scores for every latent")

    def stages(self) -> list[str]:
        """The stages this atlas has, in order (no SAEs: no saes or families; no explain)."""
        skip = ({"saes", "families"} if not self.saes else set()) | ({"explain"} if not self.explain else set())
        return [s for s in DEMO_STAGES if s not in skip]

    def target(self) -> str:
        return f"{self.model}: default atlas, {DEMO_STAGE_WORDS[self.stage]}"


DEMO_STAGE_WORDS = {
    "neurons": "neurons over the full corpus (replaces the first slice)", "saes": "SAEs trained, evaluated and built",
    "families": "SAE families (matches across widths and depth)", "explain": "explanations and scores of every latent",
}  # fmt: skip

JobRequest = Annotated[Union[BuildJob, ImportSaeJob, TrainSaeJob, ExplainJob, ScoreJob, DemoJob], Field(discriminator="kind")]
JOB_KINDS: dict[str, type[_Job]] = {cls.model_fields["kind"].default: cls for cls in (BuildJob, ImportSaeJob, TrainSaeJob, ExplainJob, ScoreJob, DemoJob)}
_adapter: TypeAdapter[Any] = TypeAdapter(JobRequest)


def parse_request(params: dict[str, Any]) -> _Job:
    """A stored or posted request as its typed model; InvalidInputError naming the problem."""
    try:
        return _adapter.validate_python(params)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidInputError(f"bad job request: {where}: {first['msg']}") from None
