"""The game's rules as plain functions: points, near-duplicates, streaks, the daily puzzle.

Points (an explanation earns them once, when it is scored):
  - above the random-explanation baseline: 10 + 100 × (score − baseline);
  - above the previous best of the latent (the machine's explanation included): 20 more
    + 200 × (score − previous best).
  - a vote earns VOTE_BONUS on the leaderboard while the explanation it backs is the latent's
    best and was written by another player (worked out when boards are read, so a vote earns
    when the explanation *ends up* best). A near-duplicate counts as a vote for the explanation
    it repeats but earns nothing; a vote for the machine's explanation earns nothing.
Near-duplicates: the same words after normalising case, punctuation and spacing, or an
embedding cosine ≥ DUPLICATE_COSINE with an existing explanation of the latent (docs/game.md
has the measurement behind the threshold).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta

DUPLICATE_COSINE = 0.9
VOTE_BONUS = 5
MAX_EXPLANATIONS_PER_LATENT = 3  # per player: more tries of one latent earn nothing


def explanation_points(score: float | None, baseline: float, previous_best: float | None) -> int:
    """Points for a new explanation scoring `score` (see the module docstring)."""
    if score is None or score <= baseline:
        return 0
    points = 10 + round(100 * (score - baseline))
    if previous_best is None or score > previous_best:
        points += 20 + round(200 * (score - max(previous_best if previous_best is not None else baseline, baseline)))
    return points


def normalise(text: str) -> str:
    """Lower case, accents, punctuation and spacing removed: trivial edits compare equal."""
    text = unicodedata.normalize("NFKD", text or "").encode("ascii", "ignore").decode().lower()
    words = re.findall(r"[a-z0-9]+", text)
    return " ".join(w[:-1] if len(w) > 3 and w.endswith("s") else w for w in words)  # plural s


def duplicate_of(text: str, vector, existing: list[tuple[int, str]], vectors) -> tuple[int, float] | None:
    """(id, similarity) of the existing explanation `text` repeats, or None. `existing` are
    (id, text) pairs, `vectors` their unit embeddings (rows), `vector` the new text's."""
    key = normalise(text)
    for eid, other in existing:
        if key and normalise(other) == key:
            return eid, 1.0
    if not existing:
        return None
    sims = vectors @ vector
    best = int(sims.argmax())
    if float(sims[best]) >= DUPLICATE_COSINE:
        return existing[best][0], float(sims[best])
    return None


def today(now: datetime | None = None) -> date:
    return (now or datetime.now(UTC)).astimezone(UTC).date()


def week_start(now: datetime | None = None) -> datetime:
    """Monday 00:00 UTC of this week: "this week" boards count plays from then."""
    day = today(now)
    monday = day - timedelta(days=day.weekday())
    return datetime(monday.year, monday.month, monday.day, tzinfo=UTC)


def streak(days: Iterable[date], now: datetime | None = None) -> int:
    """Consecutive UTC days with a play, ending today (or yesterday: today is not over)."""
    played = set(days)
    day = today(now)
    if day not in played:
        day -= timedelta(days=1)
    count = 0
    while day in played:
        count += 1
        day -= timedelta(days=1)
    return count


def daily_pick(day: date, key: str, candidates: list[int]) -> int | None:
    """The daily puzzle: the same latent for everyone on `day` (a hash of the day and `key`)."""
    if not candidates:
        return None
    digest = hashlib.sha256(f"{day.isoformat()}|{key}".encode()).digest()
    return candidates[int.from_bytes(digest[:8], "big") % len(candidates)]


OUTCOME_MARKS = {"best": "🟩⭐", "beat": "🟩", "below": "🟨", "duplicate": "🟦", "vote": "🟦", "skip": "⬜"}


def share_line(day: date, outcome: str, points: int, streak_days: int) -> str:
    """A result line to share without spoilers: no latent, no text, no score."""
    mark = OUTCOME_MARKS.get(outcome, "⬜")
    return f"latentpedia daily {day.isoformat()} {mark} +{points} points · streak {streak_days} day{'s' if streak_days != 1 else ''}"
