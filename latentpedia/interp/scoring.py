"""What every scorer returns, and scoring beside a baseline.

A scorer has `name`, `model_name`, `version` and `score(text, latent) -> ScoreOutcome`. A failure
(endpoint down, no credits, an unparsable answer) is an outcome with status "error" and the
message, never a number. `score_with_baseline` runs the scorer on the explanation and on a random
other latent's explanation over the same held-out examples, and returns the store row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from latentpedia.errors import LatentpediaError

if TYPE_CHECKING:
    from latentpedia.interp.data import LatentData

T = TypeVar("T")
# Runs one torch step: `run(fn)` calls `fn(model)` (model: the atlas' LoadedModel, or None when
# the caller has none at hand) and returns its result. The web passes the live worker's.
TorchRunner = Callable[[Callable[[Any], T]], T]


class Scorer(Protocol):
    name: str
    model_name: str | None
    version: str

    def score(self, text: str, latent: LatentData) -> ScoreOutcome: ...


@dataclass
class ScoreOutcome:
    status: str  # "ok" | "error"
    score: float | None
    details: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    scorer_model: str | None = None
    prompt_version: str | None = None

    @classmethod
    def ok(cls, value: float | None, details: dict[str, Any], scorer: Any) -> ScoreOutcome:
        if value is None:
            return cls.failed("the score is undefined (constant predictions or one class only)", scorer, details)
        return cls("ok", float(value), details, None, scorer.model_name, scorer.version)

    @classmethod
    def failed(cls, message: str, scorer: Any, details: dict[str, Any] | None = None) -> ScoreOutcome:
        return cls("error", None, details or {}, str(message), scorer.model_name, scorer.version)


def score_with_baseline(
    scorer: Scorer,
    explanation_id: int | None,
    text: str,
    latent: LatentData,
    baseline: tuple[int | None, str, int] | None,
) -> dict[str, Any]:
    """The explanation_scores row for `text` on `latent`, with the baseline
    (`baseline` = (explanation id, text, latent index) of a random other latent)."""
    main = _safe_score(scorer, text, latent)
    row: dict[str, Any] = {
        "explanation_id": explanation_id, "scorer": scorer.name, "scorer_model": main.scorer_model,
        "prompt_version": main.prompt_version, "status": main.status, "score": main.score,
        "baseline_score": None, "baseline_explanation_id": None, "error": main.error,
        "details": dict(main.details),
    }  # fmt: skip
    if main.status != "ok" or baseline is None:
        return row
    base_id, base_text, base_index = baseline
    other = _safe_score(scorer, base_text, latent)
    row["baseline_explanation_id"] = base_id
    row["baseline_score"] = other.score
    row["details"]["baseline"] = {"latent_index": base_index, "text": base_text, "status": other.status,
                                  "error": other.error}  # fmt: skip
    return row


def _safe_score(scorer: Scorer, text: str, latent: LatentData) -> ScoreOutcome:
    """The scorer's outcome; a LatentpediaError becomes an error outcome with its message."""
    try:
        return scorer.score(text, latent)
    except LatentpediaError as err:  # LLMError and bad-input errors of a local model
        return ScoreOutcome.failed(str(err), scorer)
