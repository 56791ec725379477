"""`Game`: puzzles, submits, votes, skips, boards and progress over an atlas (no web here).

    game = Game(store, embed=shared_embedder())    # the web passes an embedder run on its torch worker
    puzzle = game.puzzle(user, campaign="8-mlp-basics")      # or game.puzzle(user, daily=True)
    result = game.submit(user, "8-mlp-basics", source_id, 42, "closing brackets")
    game.vote(user, explanation_id); game.skip(user, "8-mlp-basics", source_id, 42)
    game.leaderboard(period="week"); game.progress(campaign)

Everything a player sees comes from the explain split; scoring uses the latent's stored held-out
set (holdout.py). Errors are store.accounts.CommunityError (400/403/404/409).
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from datetime import UTC, date, datetime
from typing import Any

import numpy as np

from latentpedia.interp.data import QUANTILE, TOP, AtlasText, LatentData, load_latent
from latentpedia.interp.embedding import VERSION as EMBED_VERSION
from latentpedia.interp.game import rules
from latentpedia.interp.game.batching import background_embedder
from latentpedia.interp.game.holdout import Embed, HoldoutScorer, make_holdout, reference_scores
from latentpedia.store.accounts import CommunityError, ForbiddenError, MissingError, UserRecord
from latentpedia.store.game import GAME_METHOD, GAME_SCORE_VERSION, CampaignRecord, GameStore

MAX_CLUES = 8
TEXT_CACHE = 4096
CLUE_CACHE = 2048  # latents whose clues are kept
REFERENCE_CACHE = 4096  # latents whose stored held-out set is kept (it never changes once stored)
PREFETCH_AHEAD = 1  # a player's next latents whose held-out sets a puzzle page makes in the background
WARM_LATENTS = 4  # latents of each active campaign whose held-out sets a server makes when it starts
CAMPAIGN_SECONDS = 2.0  # how long the campaigns read from the store are reused (other servers may edit them)


class Game:
    """The game over one store; thread-safe. Kept in memory, as a built source never changes: each
    source's text and live latents, each latent's clues. A latent's held-out set is made once, by
    one thread, however many players arrive on it together."""

    def __init__(self, store: Any, embed: Embed, *, llm: Any = None, llm_scorers: tuple[str, ...] = ("detection",),
                 prefetch: bool = False):  # fmt: skip
        """`llm`: an interp LLMConfig; when given, each new explanation is also scored by
        `llm_scorers` in the background (stored beside the embedding score; points stay on the latter).
        `prefetch`: serving a puzzle whose held-out set is not made yet makes it in the background,
        so the first submit on it finds it ready, and so is the player's next latent of the
        campaign (the web turns this on)."""
        self.store = store
        self.llm, self.llm_scorers = llm, llm_scorers
        self.prefetch = prefetch
        self.games = GameStore(store)
        self.embed = embed
        self._atlases: dict[int, tuple[AtlasText, HoldoutScorer]] = {}
        self._vectors: dict[str, np.ndarray] = {}
        self._shown: dict[tuple[int, int], dict[str, Any]] = {}  # (source, latent) -> its clues, as a puzzle shows them
        self._stats: dict[int, dict[int, float]] = {}  # built source -> its live latents' densities
        self._references: dict[tuple[int, int], dict[str, Any]] = {}  # (source, latent) -> its stored held-out set
        self._campaigns: tuple[float, dict[str, CampaignRecord]] = (-1.0, {})  # (read at, by slug)
        self._lock = threading.Lock()
        # The work of submits after their (batched) embedding runs one at a time, in arrival order:
        # under a burst of players they then finish one by one instead of all together at the end
        # of the burst (threads sharing the GIL), and the puzzle pages that follow are spread out.
        # Nothing before the embedding takes it, so concurrent submits still share one MiniLM call.
        self.moves = threading.Lock()
        self._making: dict[tuple[int, int], threading.Lock] = {}  # one maker per latent's held-out set

    # loading

    def _atlas(self, source_id: int) -> tuple[AtlasText, HoldoutScorer]:
        with self._lock:
            if source_id not in self._atlases:
                atlas = AtlasText(self.store, source_id)
                self._atlases[source_id] = (atlas, HoldoutScorer(atlas, background_embedder(self.embed)))  # behind players' texts
            return self._atlases[source_id]

    def _vectors_of(self, texts: list[str]) -> np.ndarray:
        missing = sorted({t for t in texts if t not in self._vectors})
        if missing:
            if len(self._vectors) > TEXT_CACHE:
                self._vectors.clear()
            self._vectors.update(zip(missing, self.embed(missing), strict=True))
        return np.stack([self._vectors[t] for t in texts]) if texts else np.zeros((0, 384), np.float32)

    def campaign(self, slug: str) -> CampaignRecord:
        """The campaign `slug` (MissingError if none). The campaigns are read again after
        CAMPAIGN_SECONDS, or at once for a name not seen yet (`forget_campaigns` after a change here)."""
        read_at, found = self._campaigns
        if time.monotonic() - read_at > CAMPAIGN_SECONDS or slug not in found:  # a new one is seen at once
            found = {c.slug: c for c in self.games.list_campaigns()}
            self._campaigns = (time.monotonic(), found)
        if slug not in found:
            raise MissingError(f"no campaign {slug!r}")
        return found[slug]

    def forget_campaigns(self) -> None:
        """Read the campaigns from the store again on next use (one was added or deleted)."""
        self._campaigns = (-1.0, {})

    def _live_latents(self, source_id: int) -> dict[int, float]:
        """{latent: density} of the source's latents that ever fire (kept once the source is built)."""
        if source_id in self._stats:
            return self._stats[source_id]
        rows = self.store.list_latents(source_id, limit=None)
        found = {r["idx"]: r["frac_nonzero"] or 0.0 for r in rows if (r["max_act"] or 0) > 0}
        source = self.store.get_source_by_id(source_id)
        if source is not None and source.status == "ready":
            self._stats[source_id] = found
        return found

    def candidates(self, campaign: CampaignRecord) -> list[int]:
        """The campaign's live latents (ever firing) in its order."""
        density = self._live_latents(campaign.source_id)
        wanted = [i for i in (campaign.latents if campaign.latents is not None else sorted(density)) if i in density]
        if campaign.order == "dense":
            return sorted(wanted, key=lambda i: (-density[i], i))
        if campaign.order == "sparse":
            return sorted(wanted, key=lambda i: (density[i], i))
        if campaign.order == "unexplained":
            people = self.games.explained_by_people(campaign.source_id)
            return sorted(wanted, key=lambda i: (i in people, i))
        return wanted

    def featured(self, now: datetime | None = None) -> CampaignRecord | None:
        """The campaign of the daily puzzle: the first active one."""
        now = now or datetime.now(UTC)
        active = [c for c in self.games.list_campaigns() if c.active(now)]
        return active[0] if active else None

    def daily(self, now: datetime | None = None) -> tuple[CampaignRecord, int, date] | None:
        campaign = self.featured(now)
        if campaign is None:
            return None
        day = rules.today(now)
        index = rules.daily_pick(day, campaign.slug, sorted(self.candidates(campaign)))
        return None if index is None else (campaign, index, day)

    # puzzles

    def next_index(self, user: UserRecord | None, campaign: CampaignRecord, plays: list | None = None) -> int | None:
        """The player's first unplayed latent of the campaign (`plays`: all the player's plays, if read already)."""
        found = self.upcoming(user, campaign, plays, 1)
        return found[0] if found else None

    def upcoming(self, user: UserRecord | None, campaign: CampaignRecord, plays: list | None = None, count: int = 1 + PREFETCH_AHEAD) -> list[int]:
        """The player's next `count` unplayed latents of the campaign, in its order."""
        order = self.candidates(campaign)
        if plays is not None:
            played = {p.latent_index for p in plays if p.source_id == campaign.source_id}
        else:
            played = self.games.played_indices(user.id, campaign.source_id) if user else set()
        return [i for i in order if i not in played][:count]

    def puzzle(self, user: UserRecord | None, campaign: str | None = None, *, index: int | None = None,
               daily: bool = False, now: datetime | None = None, plays: list | None = None) -> dict[str, Any]:  # fmt: skip
        """A latent to play: its clues and the explanations one may vote for (no scores, no
        held-out example). `index` None: the player's next latent of the campaign. `plays`: all
        of the player's plays, when the caller has read them (the page also shows their standing)."""
        if user is not None and plays is None:
            plays = self.games.plays(user_id=user.id)
        day, ahead = None, []
        if daily:
            found = self.daily(now)
            if found is None:
                raise MissingError("there is no active campaign, so no daily puzzle")
            record, index, day = found
        else:
            if campaign is None:
                raise CommunityError("name a campaign, or ask for the daily puzzle")
            record = self.campaign(campaign)
            if index is None:
                index, *ahead = self.upcoming(user, record, plays if user else None) or [None]
            elif index not in set(self.candidates(record)):
                raise MissingError(f"latent {index} is not a live latent of campaign {record.slug!r}")
        base = {"campaign": record.slug, "campaign_title": record.title, "modelId": record.model_id,
                "layer": record.source, "daily": day.isoformat() if day else None}  # fmt: skip
        if index is None:
            return {**base, "done": True, "index": None}
        if self.prefetch and user is not None:  # a player who may submit next (not every visitor)
            for latent in (index, *ahead):  # and their next latent: its set is ready when they get there
                self.prepare_soon(record.source_id, latent)
        played = [p for p in plays if p.source_id == record.source_id and p.latent_index == index] if user else []
        return {**base, "done": False, "index": index, **self.clues(record.source_id, index),
                "explanations": self._visible(record.source_id, index, user),
                "already_played": [p.action for p in played]}  # fmt: skip

    def clues(self, source_id: int, index: int) -> dict[str, Any]:
        """What a puzzle shows of a latent (its explain split), made once per latent and kept."""
        key = (source_id, int(index))
        shown = self._shown.get(key)
        if shown is None:
            atlas, _ = self._atlas(source_id)
            shown = self._clues(atlas, load_latent(atlas, index))
            with self._lock:
                while len(self._shown) >= CLUE_CACHE:
                    self._shown.pop(next(iter(self._shown)))
                self._shown[key] = shown
        return shown

    def _clues(self, atlas: AtlasText, latent: LatentData) -> dict[str, Any]:
        def example(e) -> dict[str, Any]:
            tokens = atlas.text.many([int(t) for t in e.tokens[1:]])
            return {"tokens": tokens, "values": [round(float(v), 4) for v in e.values[1:]],
                    "maxValue": round(e.max_value, 4), "maxValueTokenIndex": int(e.max_pos) - 1}  # fmt: skip

        top = sorted((e for e in latent.explain if e.kind == TOP), key=lambda e: e.rank)[:MAX_CLUES]
        quantiles = sorted((e for e in latent.explain if e.kind == QUANTILE), key=lambda e: -e.group)
        return {
            "clues": [example(e) for e in top],
            "quantiles": [example(e) for e in quantiles],
            "frac_nonzero": latent.frac_nonzero,
            "max_act": latent.max_act,
            "pos_str": [atlas.token(t) for t, _ in latent.promotes[:10]],
            "pos_values": [round(v, 4) for _, v in latent.promotes[:10]],
            "neg_str": [atlas.token(t) for t, _ in latent.suppresses[:10]],
            "neg_values": [round(v, 4) for _, v in latent.suppresses[:10]],
        }

    def _visible(self, source_id: int, index: int, user: UserRecord | None) -> list[dict[str, Any]]:
        rows = self.games.latent_explanations(source_id, index, user.id if user else None)
        return [{"id": e["id"], "text": e["text"], "author": e["author"] or ("machine" if e["method"] != GAME_METHOD else "deleted account"),
                 "machine": e["author_id"] is None and e["method"] != GAME_METHOD, "vote_score": e["vote_score"],
                 "my_vote": e["my_vote"], "mine": user is not None and e["author_id"] == user.id} for e in rows]  # fmt: skip

    # the held-out set of a latent

    def stored_reference(self, source_id: int, index: int) -> dict[str, Any] | None:
        """The latent's stored held-out set, or None if it is not made yet (kept once read: a
        stored set never changes)."""
        key = (source_id, int(index))
        found = self._references.get(key)
        if found is None:
            found = self.games.get_game_latent(source_id, index)
            if found is not None:
                with self._lock:
                    if len(self._references) >= REFERENCE_CACHE:
                        self._references.pop(next(iter(self._references)))
                    self._references[key] = found
        return found

    def reference(self, source_id: int, index: int) -> dict[str, Any]:
        """The latent's stored held-out set with its baseline and machine scores (made once)."""
        found = self.stored_reference(source_id, index)
        if found is not None:
            return found
        with self._maker(source_id, index):  # players arriving together make it once
            found = self.stored_reference(source_id, index)
            if found is not None:
                return found
            atlas, scorer = self._atlas(source_id)
            latent = load_latent(atlas, index)
            if latent.max_act <= 0:
                raise CommunityError("this latent never fires in the corpus: there is nothing to explain")
            holdout = make_holdout(atlas, latent)
            machine, others = self._machine_explanations(source_id)
            values = reference_scores(atlas, latent, scorer, holdout, machine.get(index), others)
            self.games.put_game_latent(source_id, index, {"holdout": holdout, **values})
            return self.stored_reference(source_id, index)

    def _maker(self, source_id: int, index: int) -> threading.Lock:
        with self._lock:
            return self._making.setdefault((source_id, int(index)), threading.Lock())

    def prepare_soon(self, source_id: int, index: int) -> None:
        """Make the latent's held-out set in the background unless it exists or is being made
        (a puzzle being shown: its first submit then finds it ready). Errors are left to the submit."""
        if self._maker(source_id, index).locked() or self.stored_reference(source_id, index) is not None:
            return

        def make() -> None:
            try:
                self.reference(source_id, index)
            except Exception:  # noqa: BLE001 - the submit makes it again and reports the error
                pass

        threading.Thread(target=make, name="latentpedia-game-prepare", daemon=True).start()

    def prepare_campaigns(self, count: int = WARM_LATENTS) -> threading.Thread:
        """Make, in one background thread, the held-out sets of the first `count` latents of each
        active campaign (in its order) that have none yet: a fresh campaign's first players, who
        arrive on the same latents, then find them ready. Later latents are made as players near
        them (`prefetch`). The thread is returned (tests join it)."""

        def make() -> None:
            try:
                now = datetime.now(UTC)
                for record in self.games.list_campaigns():
                    if record.active(now):
                        for index in self.candidates(record)[:count]:
                            if self.stored_reference(record.source_id, index) is None:
                                self.reference(record.source_id, index)
            except Exception:  # noqa: BLE001 - a head start only: a submit makes the set and reports errors
                pass

        thread = threading.Thread(target=make, name="latentpedia-game-warm", daemon=True)
        thread.start()
        return thread

    def _machine_explanations(self, source_id: int) -> tuple[dict[int, tuple[int, str]], dict[int, tuple[int, str]]]:
        """Automatic explanations of the source by latent (the offline explainer's preferred)."""
        from sqlalchemy import select

        from latentpedia.store.community_schema import Explanation

        query = (select(Explanation.latent_index, Explanation.id, Explanation.text, Explanation.method)
                 .where(Explanation.source_id == source_id, Explanation.author_id.is_(None), Explanation.method != GAME_METHOD)
                 .order_by(Explanation.id))  # fmt: skip
        found: dict[int, tuple[int, str]] = {}
        with self.store._read() as session:
            for index, eid, text, method in session.execute(query):
                if method == "offline" or index not in found:
                    found[index] = (eid, text)
        return found, found

    def best(self, source_id: int, index: int, reference: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """The latent's best explanation so far on its held-out set (the machine's included)."""
        reference = reference or self.stored_reference(source_id, index)
        scored = self.games.game_scores(source_id, index)
        top = max(scored.items(), key=lambda kv: (kv[1][1], -kv[0]), default=None)
        machine = None
        if reference and reference["machine_score"] is not None:
            machine = {"id": reference["machine_explanation_id"], "text": reference["machine_text"],
                       "score": reference["machine_score"], "author": "machine", "author_id": None}  # fmt: skip
        if top is None or (machine and machine["score"] >= top[1][1]):
            return machine
        names = self.games.usernames({top[1][2]} - {None})
        return {"id": top[0], "text": top[1][3], "score": top[1][1], "author": names.get(top[1][2], "deleted account"),
                "author_id": top[1][2]}

    # actions

    def submit(self, user: UserRecord, campaign: str | None, source_id: int, index: int, text: str,
               *, daily: str | None = None) -> dict[str, Any]:  # fmt: skip
        """Score a new explanation on the held-out set, or count a near-duplicate as a vote."""
        from latentpedia.store.community import check_text
        from latentpedia.store.textcheck import check_text_value

        text = check_text("explanation", text)
        check_text_value("explanation", text)  # unstorable text: refused before anything is computed or written
        record = self._campaign_of(campaign, source_id, index)
        reference = self.reference(source_id, index)
        rows = self.games.latent_explanations(source_id, index)
        existing = [(e["id"], e["text"]) for e in rows]
        if reference["machine_explanation_id"] is None:
            existing.append((None, reference["machine_text"]))  # the machine's label, even unstored
        vectors = self._vectors_of([text] + [t for _, t in existing])  # one embedder call (batched with other players')
        vector = vectors[0]
        with self.moves:  # the best so far read here, so two moves never both beat the same old best
            previous = self.best(source_id, index, reference)
            twin = rules.duplicate_of(text, vector, existing, vectors[1:])
            common = {"campaign": record.slug if record else None, "baseline": reference["baseline_score"],
                      "machine": {"text": reference["machine_text"], "score": reference["machine_score"]}}  # fmt: skip
            if twin is not None:
                authors = {e["id"]: e["author_id"] for e in rows}
                return {**common, **self._as_vote(user, record, source_id, index, twin, dict(existing), authors, previous, daily)}
            tries = [p for p in self.games.plays(user_id=user.id, source_id=source_id, index=index) if p.action == "explain"]
            if len(tries) >= rules.MAX_EXPLANATIONS_PER_LATENT:
                raise CommunityError(f"you have written {len(tries)} explanations of this latent: vote for one, or play another")
            _, scorer = self._atlas(source_id)
            score = scorer.score_vectors(vector[None, :], reference["holdout"])[0]
            prev_score = previous["score"] if previous else None
            points = rules.explanation_points(score, reference["baseline_score"], prev_score)
            scored = {"scorer": "embedding", "status": "ok" if score is not None else "error", "score": score,
                      "baseline_score": reference["baseline_score"], "scorer_model": HoldoutScorer.model_name,
                      "prompt_version": GAME_SCORE_VERSION, "error": None if score is not None else "one class only",
                      "details": {"held_out": "game_latents.holdout", "embedding": EMBED_VERSION,
                                  "positives": len(reference["holdout"]["positives"]),
                                  "negatives": len(reference["holdout"]["negatives"])}}  # fmt: skip
            eid = self.games.add_scored_explanation(user.id, source_id, index, text, score=scored, points=points,
                                                    campaign_id=record.id if record else None, daily=daily,
                                                    details={"game": {"campaign": common["campaign"], "daily": daily}})  # fmt: skip
            later = list(self.llm_scorers) if self.llm is not None else []
            if later:
                threading.Thread(target=self._llm_score, args=(eid,), name="latentpedia-game-llm", daemon=True).start()
            outcome = "best" if score is not None and (prev_score is None or score > prev_score) and score > reference["baseline_score"] \
                else "beat" if score is not None and score > reference["baseline_score"] else "below"  # fmt: skip
            return {**common, "action": "explain", "explanation_id": eid, "score": score, "points": points,
                    "outcome": outcome, "duplicate_of": None, "similarity": None, "scoring_later": later,
                    "best": _best_after(previous, {"id": eid, "text": text, "score": score, "author": user.username, "author_id": user.id}),
                    "previous_best": prev_score}  # fmt: skip

    def _llm_score(self, explanation_id: int) -> None:
        """Simulation / detection through the configured endpoint (errors are stored as error rows)."""
        from latentpedia.interp.api import score_explanation

        try:
            score_explanation(self.store, explanation_id, self.llm_scorers, llm=self.llm)
        except Exception:  # noqa: BLE001 - a background extra: the game goes on without it
            pass

    def _as_vote(self, user: UserRecord, record: CampaignRecord | None, source_id: int, index: int, twin: tuple[int | None, float],
                 texts: dict[int | None, str], authors: dict[int, int | None], best: dict[str, Any] | None,
                 daily: str | None) -> dict[str, Any]:  # fmt: skip
        """A near-duplicate counted as the player's vote for its twin (none for their own text or the
        machine's unstored label), with the play, in one transaction. `texts`, `authors`: the
        latent's explanations as the submit read them; `best`: the latent's best (a vote leaves it)."""
        eid, similarity = twin
        stored = eid is not None and eid in authors
        self.games.add_duplicate(user.id, source_id, index, eid, vote=stored and authors[eid] != user.id,
                                 campaign_id=record.id if record else None, daily=daily)  # fmt: skip
        return {"action": "duplicate", "explanation_id": eid, "score": None, "points": 0, "outcome": "duplicate",
                "duplicate_of": texts.get(eid) if stored else None, "similarity": round(similarity, 4),
                "best": best, "previous_best": None}  # fmt: skip

    def vote(self, user: UserRecord, explanation_id: int, campaign: str | None = None, *, daily: str | None = None) -> dict[str, Any]:
        found = self.store.get_explanation(explanation_id)
        if found is None:
            raise MissingError(f"no explanation {explanation_id}")
        if found.author_id == user.id:
            raise ForbiddenError("you cannot vote for your own explanation")
        record = self._campaign_of(campaign, found.source_id, found.latent_index)
        total = self.store.vote(user.id, explanation_id, 1)
        voted = [p for p in self.games.plays(user_id=user.id, source_id=found.source_id, index=found.latent_index)
                 if p.action in ("vote", "duplicate") and p.explanation_id == explanation_id]  # fmt: skip
        if not voted:
            self.games.add_play(user.id, found.source_id, found.latent_index, "vote", campaign_id=record.id if record else None,
                                explanation_id=explanation_id, daily=daily)  # fmt: skip
        return {"action": "vote", "explanation_id": explanation_id, "vote_score": total, "points": 0, "outcome": "vote",
                "best": self.best(found.source_id, found.latent_index)}  # fmt: skip

    def skip(self, user: UserRecord, campaign: str | None, source_id: int, index: int, *, daily: str | None = None) -> dict[str, Any]:
        record = self._campaign_of(campaign, source_id, index)
        self.games.add_play(user.id, source_id, index, "skip", campaign_id=record.id if record else None, daily=daily)
        return {"action": "skip", "points": 0, "outcome": "skip"}

    def _campaign_of(self, slug: str | None, source_id: int, index: int) -> CampaignRecord | None:
        if slug is None:
            return None
        record = self.campaign(slug)
        if record.source_id != source_id or (record.latents is not None and index not in record.latents):
            raise CommunityError(f"latent {index} is not part of campaign {slug!r}")
        if not record.active(datetime.now(UTC)):
            raise ForbiddenError(f"campaign {slug!r} is not open now")
        return record

    # boards and pages

    def leaderboard(self, *, period: str = "all", campaign: str | None = None, limit: int = 50,
                    now: datetime | None = None) -> list[dict[str, Any]]:  # fmt: skip
        """Players by points: all time, this week, or one campaign (a contest: within its window)."""
        if period not in ("all", "week"):
            raise CommunityError(f"period is 'all' or 'week', not {period!r}")
        since = until = None
        campaign_id = None
        if campaign is not None:
            record = self.campaign(campaign)
            campaign_id, since, until = record.id, record.starts_at, record.ends_at
        if period == "week":
            start = rules.week_start(now)
            since = max(since, start) if since else start
        plays = self.games.plays(campaign_id=campaign_id, since=since, until=until)
        return self._board(plays)[:limit]

    def _board(self, plays: list, *, banned: set[int] | None = None, names: dict[int, str] | None = None) -> list[dict[str, Any]]:
        """Players of `plays` by points (`banned`, `names`: given when the caller knows them)."""
        banned = self.games.banned_ids() if banned is None else banned
        hidden = self.games.hidden_ids()
        bests: dict[tuple[int, int], tuple[int | None, int | None]] = {}  # latent -> (best id, its author)
        points: Counter[int] = Counter()
        counts: dict[int, Counter[str]] = defaultdict(Counter)
        for p in plays:
            if p.user_id in banned or (p.explanation_id is not None and p.explanation_id in hidden and p.action == "explain"):
                continue
            counts[p.user_id][p.action] += 1
            points[p.user_id] += p.points
            if p.action == "vote" and p.explanation_id is not None:  # a duplicate is a vote that earns nothing
                key = (p.source_id, p.latent_index)
                if key not in bests:
                    best = self.best(*key)
                    bests[key] = (best["id"], best["author_id"]) if best else (None, None)
                best_id, author = bests[key]
                if best_id == p.explanation_id and author not in (None, p.user_id):
                    points[p.user_id] += rules.VOTE_BONUS
        names = self.games.usernames(set(counts)) if names is None else names
        rows = [{"username": names[u], "points": points[u], "explanations": counts[u]["explain"],
                 "votes": counts[u]["vote"] + counts[u]["duplicate"], "skips": counts[u]["skip"]}
                for u in counts if u in names]  # fmt: skip
        rows.sort(key=lambda r: (-r["points"], r["username"]))
        return [{"rank": n + 1, **row} for n, row in enumerate(rows)]

    def standing(self, user: UserRecord, now: datetime | None = None, plays: list | None = None) -> dict[str, Any]:
        """A player's points, streak and today's share line (what every puzzle page shows of them)."""
        plays = self.games.plays(user_id=user.id) if plays is None else plays
        board = self._board(plays, banned={user.id} if user.disabled else set(), names={user.id: user.username})
        days = {p.created_at.date() for p in plays if p.action != "skip"}
        day = rules.today(now)
        daily = [p for p in plays if p.daily == day.isoformat()]
        share = None
        if daily:
            last = daily[-1]
            reference = self.stored_reference(last.source_id, last.latent_index)
            share = rules.share_line(day, _outcome(last, reference), sum(p.points for p in daily), rules.streak(days, now))
        return {"username": user.username, "points": board[0]["points"] if board else 0, "streak": rules.streak(days, now),
                "plays": len(plays), "share": share}  # fmt: skip

    def player(self, user: UserRecord, now: datetime | None = None) -> dict[str, Any]:
        """`standing` plus the player's explanations, newest first, with their scores: the game's
        held-out score and points, and the other scorers' (an LLM's, scored in the background)."""
        plays = self.games.plays(user_id=user.id)
        hidden = self.games.hidden_ids()
        explanations = []
        for p in reversed(plays):
            if p.action == "explain" and p.explanation_id not in hidden:
                found = self.store.get_explanation(p.explanation_id)
                if found is not None:
                    others = [{"scorer": r.scorer, "status": r.status, "score": r.score, "baseline": r.baseline_score}
                              for r in found.scores if r.prompt_version != GAME_SCORE_VERSION]  # fmt: skip
                    explanations.append({"id": found.id, "text": found.text, "modelId": found.model_id, "layer": found.source,
                                         "index": found.latent_index, "score": p.score, "points": p.points,
                                         "vote_score": found.vote_score, "other_scores": others})  # fmt: skip
        return {**self.standing(user, now, plays), "explanations": explanations}

    def progress(self, campaign: CampaignRecord) -> dict[str, Any]:
        """How much of the campaign has an explanation beating its baseline."""
        wanted = self.candidates(campaign)
        good = self.games.beating_baseline(campaign.source_id)
        good |= {i for i, (b, m) in self.games.game_latents(campaign.source_id).items() if m is not None and m > b}
        done = len(set(wanted) & good)
        fraction = done / len(wanted) if wanted else 0.0
        return {"latents": len(wanted), "beating_baseline": done, "fraction": fraction,
                "label": f"{round(100 * fraction)}% of {campaign.source} has an explanation beating its baseline"}  # fmt: skip


def _best_after(previous: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any] | None:
    """The latent's best once `new` is stored, as `Game.best` would read it: the new explanation
    only when it scores strictly higher (ties go to the older one, the machine's included)."""
    if new["score"] is None or (previous is not None and new["score"] <= previous["score"]):
        return previous
    return new


def _outcome(play: Any, reference: dict[str, Any] | None) -> str:
    """What a play did, for the share line: best / beat / below, or the action."""
    if play.action != "explain":
        return play.action
    if reference is None or play.score is None or play.score <= reference["baseline_score"]:
        return "below"
    only_baseline = rules.explanation_points(play.score, reference["baseline_score"], float("inf"))
    return "best" if play.points > only_baseline else "beat"
