"""The game's tables (migration 0008_game) and `GameStore`, their reads and writes.

    games = GameStore(store)                      # wraps an open Store (same engine, same sessions)
    games.add_campaign("8-mlp-basics", "Layer 8 neurons", source_id, order="unexplained")
    games.add_play(user_id, source_id, 42, "explain", explanation_id=7, score=0.81, points=35)
    games.leaderboard(since=week_start)           # banned users and hidden explanations left out

Tables: game_campaigns (a source, or chosen latents of it, an order, a time window),
game_latents (the held-out scoring examples of a latent, fixed the first time it is played,
with its random-explanation baseline and the machine explanation's score on them),
game_plays (every submit / vote / skip with the points it earned), game_reports (the
moderation queue), game_hidden (explanations taken out by a moderator, kept whole so they can be
restored under the same id), game_invites (sign-up codes) and game_prefs (simple or advanced
mode, tutorial seen). Explanations written in the game are ordinary rows of `explanations`
(method "game"). No game rule lives here: points are computed by latentpedia.interp.game.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String, Text, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from latentpedia import security
from latentpedia.store import codec, hot_reads
from latentpedia.store.accounts import CommunityError, ConflictError, MissingError
from latentpedia.store.base import utc
from latentpedia.store.community_schema import Explanation, ExplanationScore, User, Vote
from latentpedia.store.feature_rows import dbapi_connection
from latentpedia.store.records import _Record
from latentpedia.store.schema import Base, Source, utcnow

GAME_METHOD = "game"  # explanations.method of explanations written in the game
GAME_SCORE_VERSION = "game-v1"  # explanation_scores.prompt_version of scores on the game's held-out set
ORDERS = ("unexplained", "dense", "sparse", "index")
ACTIONS = ("explain", "duplicate", "vote", "skip")
REPORT_STATES = ("open", "hidden", "dismissed", "restored")
SLUG = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


def _fk(target: str, ondelete: str = "CASCADE") -> ForeignKey:
    return ForeignKey(target, ondelete=ondelete)


class Campaign(Base):
    """Latents of one source to explain, in an order, optionally within a time window (a contest)."""

    __tablename__ = "game_campaigns"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    source_id: Mapped[int] = mapped_column(_fk("sources.id"))
    latents: Mapped[list[Any] | None] = mapped_column(nullable=True)  # None: every latent of the source
    order: Mapped[str] = mapped_column(String(20))
    starts_at: Mapped[datetime | None] = mapped_column(nullable=True)
    ends_at: Mapped[datetime | None] = mapped_column(nullable=True)
    created_by: Mapped[int | None] = mapped_column(_fk("users.id", "SET NULL"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class GameLatent(Base):
    """A latent's fixed held-out scoring set and the reference scores on it."""

    __tablename__ = "game_latents"

    source_id: Mapped[int] = mapped_column(_fk("sources.id"), primary_key=True)
    latent_index: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    holdout: Mapped[dict[str, Any]]
    baseline_score: Mapped[float] = mapped_column(Float)
    baseline: Mapped[dict[str, Any]]  # the random other latents' explanations and their scores
    machine_explanation_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    machine_text: Mapped[str] = mapped_column(Text)
    machine_score: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Play(Base):
    """One action of a player on a latent, with the points it earned when it was made."""

    __tablename__ = "game_plays"
    __table_args__ = (Index("ix_game_plays_user", "user_id"), Index("ix_game_plays_latent", "source_id", "latent_index"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(_fk("users.id"))
    campaign_id: Mapped[int | None] = mapped_column(_fk("game_campaigns.id", "SET NULL"), nullable=True)
    source_id: Mapped[int] = mapped_column(_fk("sources.id"))
    latent_index: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(12))
    explanation_id: Mapped[int | None] = mapped_column(Integer, nullable=True)  # no FK: survives hiding
    score: Mapped[float | None] = mapped_column(Float, nullable=True)
    points: Mapped[int] = mapped_column(Integer, default=0)
    daily: Mapped[str | None] = mapped_column(String(10), nullable=True)  # the UTC date of a daily puzzle
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Report(Base):
    """A player's report of an explanation; `status` open until a moderator acts."""

    __tablename__ = "game_reports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    explanation_id: Mapped[int] = mapped_column(Integer)
    reporter_id: Mapped[int] = mapped_column(_fk("users.id"))
    reason: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(12), default="open")
    resolved_by: Mapped[int | None] = mapped_column(_fk("users.id", "SET NULL"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Hidden(Base):
    """An explanation a moderator hid: its row, scores and votes, kept to restore it."""

    __tablename__ = "game_hidden"

    explanation_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    source_id: Mapped[int] = mapped_column(_fk("sources.id"))
    latent_index: Mapped[int] = mapped_column(Integer)
    author_id: Mapped[int | None] = mapped_column(_fk("users.id", "SET NULL"), nullable=True)
    data: Mapped[dict[str, Any]]
    hidden_by: Mapped[int | None] = mapped_column(_fk("users.id", "SET NULL"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Invite(Base):
    """A sign-up code made by an admin; used once."""

    __tablename__ = "game_invites"

    code: Mapped[str] = mapped_column(String(40), primary_key=True)
    created_by: Mapped[int | None] = mapped_column(_fk("users.id", "SET NULL"), nullable=True)
    used_by: Mapped[int | None] = mapped_column(_fk("users.id", "SET NULL"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    used_at: Mapped[datetime | None] = mapped_column(nullable=True)


class Prefs(Base):
    """A player's mode ("simple" / "advanced") and whether the tutorial was seen."""

    __tablename__ = "game_prefs"

    user_id: Mapped[int] = mapped_column(_fk("users.id"), primary_key=True)
    mode: Mapped[str] = mapped_column(String(10), default="simple")
    tutorial_done: Mapped[bool] = mapped_column(Boolean, default=False)


@dataclass(frozen=True)
class CampaignRecord(_Record):
    id: int
    slug: str
    title: str
    source_id: int
    model_id: str
    source: str
    latents: list[int] | None
    order: str
    starts_at: datetime | None
    ends_at: datetime | None
    created_at: datetime

    def active(self, now: datetime) -> bool:
        return (self.starts_at is None or self.starts_at <= now) and (self.ends_at is None or now < self.ends_at)

    @property
    def contest(self) -> bool:
        """A campaign with a time window is a side quest with its own board."""
        return self.ends_at is not None


@dataclass(frozen=True)
class PlayRecord(_Record):
    id: int
    user_id: int
    campaign_id: int | None
    source_id: int
    latent_index: int
    action: str
    explanation_id: int | None
    score: float | None
    points: int
    daily: str | None
    created_at: datetime


@dataclass(frozen=True)
class ReportRecord(_Record):
    id: int
    explanation_id: int
    reporter: str
    reason: str
    status: str
    text: str | None  # the explanation's text (None if it is gone)
    author: str | None
    model_id: str | None
    source: str | None
    latent_index: int | None
    created_at: datetime


def check_slug(slug: str) -> str:
    if not SLUG.fullmatch(slug or ""):
        raise CommunityError(f"invalid campaign name {slug!r}: use 1-64 lowercase letters, digits, '_' or '-'")
    return slug


def _campaign(row: Campaign, model_id: str, source: str) -> CampaignRecord:
    return CampaignRecord(row.id, row.slug, row.title, row.source_id, model_id, source, row.latents, row.order,
                          utc(row.starts_at), utc(row.ends_at), utc(row.created_at))  # fmt: skip


def _play(row: Play) -> PlayRecord:
    return PlayRecord(row.id, row.user_id, row.campaign_id, row.source_id, row.latent_index, row.action,
                      row.explanation_id, row.score, row.points, row.daily, utc(row.created_at))  # fmt: skip


_MOVE_PG = """WITH e AS (
  INSERT INTO explanations (source_id, latent_index, text, method, author_id, details, created_at)
  SELECT s.id, %(idx)s, %(text)s, %(method)s, %(uid)s, CAST(%(edetails)s AS json), %(now)s FROM sources s
  WHERE s.id = %(sid)s AND %(idx)s >= 0 AND %(idx)s < s.d_sae RETURNING id),
sc AS (
  INSERT INTO explanation_scores (explanation_id, scorer, scorer_model, prompt_version, status, score, baseline_score,
                                  baseline_explanation_id, details, error, created_at)
  SELECT id, %(scorer)s, %(smodel)s, %(version)s, %(status)s, %(score)s, %(baseline)s, %(bid)s, CAST(%(sdetails)s AS json),
         %(error)s, %(now)s FROM e),
p AS (
  INSERT INTO game_plays (user_id, campaign_id, source_id, latent_index, action, explanation_id, score, points, daily, created_at)
  SELECT %(uid)s, %(cid)s, %(sid)s, %(idx)s, 'explain', id, %(score)s, %(points)s, %(daily)s, %(now)s FROM e)
SELECT id FROM e"""
_MOVE_SQLITE = (
    "INSERT INTO explanations (source_id, latent_index, text, method, author_id, details, created_at) "
    "SELECT s.id, :idx, :text, :method, :uid, :edetails, :now FROM sources s WHERE s.id = :sid AND :idx >= 0 AND :idx < s.d_sae",
    "INSERT INTO explanation_scores (explanation_id, scorer, scorer_model, prompt_version, status, score, baseline_score, "
    "baseline_explanation_id, details, error, created_at) "
    "VALUES (:eid, :scorer, :smodel, :version, :status, :score, :baseline, :bid, :sdetails, :error, :now)",
    "INSERT INTO game_plays (user_id, campaign_id, source_id, latent_index, action, explanation_id, score, points, daily, created_at) "
    "VALUES (:uid, :cid, :sid, :idx, 'explain', :eid, :score, :points, :daily, :now)",
)


def _insert_scored_move(conn: Any, dialect: str, move: dict[str, Any], now: datetime) -> int | None:
    """A player's explanation, its score and its play on the driver's connection, all or nothing:
    one statement on PostgreSQL (one round trip, atomic in autocommit), one transaction of three
    on SQLite (datetimes as SQLAlchemy writes them there). None when the source has no such latent.
    Through SQLAlchemy's Core this cost ~3 ms of CPU on PostgreSQL inside the lock every submit
    of a server takes in turn (bench/RESULTS.md)."""
    cursor = conn.cursor()
    try:
        if dialect == "postgresql":
            cursor.execute(_MOVE_PG, {**move, "now": now})
            row = cursor.fetchone()
            return None if row is None else row[0]
        values = {**move, "now": now.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")}
        try:
            cursor.execute(_MOVE_SQLITE[0], values)
            if cursor.rowcount != 1:
                conn.rollback()
                return None
            values["eid"] = cursor.lastrowid
            cursor.execute(_MOVE_SQLITE[1], values)
            cursor.execute(_MOVE_SQLITE[2], values)
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        return values["eid"]
    finally:
        cursor.close()


class GameStore:
    """The game's reads and writes over an open `Store` (each write one transaction)."""

    def __init__(self, store: Any):
        self.store = store

    def _begin(self):
        return self.store._begin()

    def _read(self):
        return self.store._read()

    def _hot(self, read: Any, *args: Any) -> Any:
        """`read(conn, dialect, *args)`, one of store/hot_reads.py's reads, on a pooled driver connection."""
        with dbapi_connection(self.store.engine) as conn:
            return read(conn, self.store.dialect, *args)

    # campaigns

    def add_campaign(self, slug: str, title: str, source_id: int, *, order: str = "unexplained",
                     latents: list[int] | None = None, starts_at: datetime | None = None,
                     ends_at: datetime | None = None, created_by: int | None = None) -> CampaignRecord:  # fmt: skip
        """A new campaign (ConflictError if the name is taken; CommunityError for bad fields)."""
        check_slug(slug)
        title = (title or slug).strip()[:200]
        if order not in ORDERS:
            raise CommunityError(f"unknown order {order!r}; use one of {', '.join(ORDERS)}")
        if starts_at and ends_at and ends_at <= starts_at:
            raise CommunityError("the campaign ends before it starts")
        with self._begin() as session:
            source = session.get(Source, source_id)
            if source is None:
                raise MissingError(f"no source with id {source_id}")
            if latents is not None:
                latents = sorted({int(i) for i in latents})
                bad = [i for i in latents if not 0 <= i < source.d_sae]
                if bad or not latents:
                    raise CommunityError(f"source {source.name!r} has latents 0..{source.d_sae - 1}; got {bad or 'none'}")
            if session.scalar(select(Campaign.id).where(Campaign.slug == slug)) is not None:
                raise ConflictError(f"campaign {slug!r} exists")
            row = Campaign(slug=slug, title=title, source_id=source_id, latents=latents, order=order,
                           starts_at=starts_at, ends_at=ends_at, created_by=created_by)  # fmt: skip
            session.add(row)
            session.flush()
            return _campaign(row, source.model_id, source.name)

    def list_campaigns(self) -> list[CampaignRecord]:
        query = select(Campaign, Source.model_id, Source.name).join(Source, Source.id == Campaign.source_id).order_by(Campaign.id)
        with self._read() as session:
            return [_campaign(row, m, name) for row, m, name in session.execute(query)]

    def get_campaign(self, slug: str) -> CampaignRecord:
        for found in self.list_campaigns():
            if found.slug == slug:
                return found
        raise MissingError(f"no campaign {slug!r}")

    def delete_campaign(self, slug: str) -> bool:
        with self._begin() as session:
            return session.execute(delete(Campaign).where(Campaign.slug == slug)).rowcount > 0

    # held-out sets

    def get_game_latent(self, source_id: int, index: int) -> dict[str, Any] | None:
        with self._read() as session:
            row = session.get(GameLatent, (source_id, int(index)))
            if row is None:
                return None
            return {c: getattr(row, c) for c in ("source_id", "latent_index", "holdout", "baseline_score", "baseline",
                                                 "machine_explanation_id", "machine_text", "machine_score")}  # fmt: skip

    def put_game_latent(self, source_id: int, index: int, values: dict[str, Any]) -> dict[str, Any]:
        """Store a latent's held-out set unless one exists; the stored one (first writer wins,
        also when two servers make it at once)."""
        try:
            with self._begin() as session:
                if session.get(GameLatent, (source_id, int(index))) is None:
                    session.add(GameLatent(source_id=source_id, latent_index=int(index), **values))
        except IntegrityError:  # another writer stored it between our read and our insert
            pass
        return self.get_game_latent(source_id, index)

    def game_latents(self, source_id: int) -> dict[int, tuple[float, float | None]]:
        """{index: (baseline score, machine score)} of the source's played latents."""
        query = select(GameLatent.latent_index, GameLatent.baseline_score, GameLatent.machine_score).where(GameLatent.source_id == source_id)
        with self._read() as session:
            return {i: (b, m) for i, b, m in session.execute(query)}

    # plays

    def add_play(self, user_id: int, source_id: int, index: int, action: str, *, campaign_id: int | None = None,
                 explanation_id: int | None = None, score: float | None = None, points: int = 0,
                 daily: str | None = None) -> PlayRecord:  # fmt: skip
        if action not in ACTIONS:
            raise CommunityError(f"unknown action {action!r}")
        with self._begin() as session:
            row = Play(user_id=user_id, campaign_id=campaign_id, source_id=source_id, latent_index=int(index), action=action,
                       explanation_id=explanation_id, score=score, points=int(points), daily=daily)  # fmt: skip
            session.add(row)
            session.flush()
            return _play(row)

    def add_scored_explanation(self, user_id: int, source_id: int, index: int, text: str, *, score: dict[str, Any],
                               points: int, campaign_id: int | None, details: dict[str, Any], daily: str | None) -> int:  # fmt: skip
        """A player's new explanation (method "game"), its held-out score (`add_score`'s keyword
        names) and the play that earned `points`, in one transaction (a submit's writes); the
        explanation's id."""
        from latentpedia.store.community import _score_values, check_text

        text = check_text("explanation", text)
        values = _score_values({**score, "explanation_id": None})
        move = {"sid": source_id, "idx": int(index), "text": text, "method": GAME_METHOD, "uid": user_id, "edetails": codec.dumps(details),
                "scorer": values["scorer"], "smodel": values["scorer_model"], "version": values["prompt_version"], "status": values["status"],
                "score": values["score"], "baseline": values["baseline_score"], "bid": values["baseline_explanation_id"],
                "sdetails": codec.dumps(values["details"]), "error": values["error"], "cid": campaign_id, "points": int(points),
                "daily": daily}  # fmt: skip
        with dbapi_connection(self.store.engine) as conn:
            eid = _insert_scored_move(conn, self.store.dialect, move, utcnow())
        if eid is None:
            raise MissingError(f"no latent {index} in source id {source_id}")
        return eid

    def add_duplicate(self, user_id: int, source_id: int, index: int, explanation_id: int | None, *, vote: bool,
                      campaign_id: int | None, daily: str | None) -> None:  # fmt: skip
        """A near-duplicate submit: the player's +1 vote for `explanation_id` (when `vote`) and the
        play that earned nothing, in one transaction."""
        with self.store.engine.begin() as conn:  # Core statements: two or three small writes, ~2x cheaper than the ORM's
            if vote and explanation_id is not None:
                voted = conn.execute(update(Vote).where(Vote.user_id == user_id, Vote.explanation_id == explanation_id).values(value=1))
                if not voted.rowcount:
                    conn.execute(insert(Vote).values(user_id=user_id, explanation_id=explanation_id, value=1))
            conn.execute(insert(Play).values(user_id=user_id, campaign_id=campaign_id, source_id=source_id, latent_index=int(index),
                                             action="duplicate", explanation_id=explanation_id, points=0, daily=daily))  # fmt: skip

    def plays(self, *, user_id: int | None = None, source_id: int | None = None, index: int | None = None,
              campaign_id: int | None = None, since: datetime | None = None, until: datetime | None = None) -> list[PlayRecord]:  # fmt: skip
        if user_id is not None and campaign_id is None and since is None and until is None:  # a player's: the hot path
            return [PlayRecord(*row) for row in self._hot(hot_reads.read_plays, user_id, source_id, index)]
        query = select(Play).order_by(Play.id)
        for column, value in ((Play.user_id, user_id), (Play.source_id, source_id), (Play.latent_index, index),
                              (Play.campaign_id, campaign_id)):  # fmt: skip
            if value is not None:
                query = query.where(column == value)
        if since is not None:
            query = query.where(Play.created_at >= since)
        if until is not None:
            query = query.where(Play.created_at < until)
        with self._read() as session:
            return [_play(row) for row in session.scalars(query)]

    def played_indices(self, user_id: int, source_id: int) -> set[int]:
        query = select(Play.latent_index).where(Play.user_id == user_id, Play.source_id == source_id).distinct()
        with self._read() as session:
            return set(session.scalars(query))

    def game_scores(self, source_id: int, index: int | None = None) -> dict[int, tuple[int, float, int | None, str]]:
        """{explanation id: (latent, score, author id, text)} of the visible game-scored explanations."""
        return self._hot(hot_reads.game_scores, source_id, GAME_SCORE_VERSION, index)

    def latent_explanations(self, source_id: int, index: int, user_id: int | None = None) -> list[dict[str, Any]]:
        """A latent's explanations as a puzzle lists them, best voted first (then oldest): id,
        text, method, author id and name, vote sum and `my_vote` (`user_id`'s vote, 0 if none). One
        statement; no scores (what `list_explanations` also reads, with each score's details,
        costs a page several times more)."""
        return self._hot(hot_reads.latent_explanations, source_id, index, user_id)

    def hidden_ids(self) -> set[int]:
        return self._hot(hot_reads.hidden_ids)

    def banned_ids(self) -> set[int]:
        with self._read() as session:
            return set(session.scalars(select(User.id).where(User.disabled.is_(True))))

    def usernames(self, ids: set[int]) -> dict[int, str]:
        if not ids:
            return {}
        return self._hot(hot_reads.usernames, ids)

    def explained_by_people(self, source_id: int) -> set[int]:
        """Latents of the source with an explanation written by someone (not an explainer)."""
        query = select(Explanation.latent_index).where(Explanation.source_id == source_id, Explanation.author_id.is_not(None)).distinct()
        with self._read() as session:
            return set(session.scalars(query))

    def beating_baseline(self, source_id: int) -> set[int]:
        """Latents with a stored ok score above its baseline (any scorer, any explanation)."""
        query = (
            select(Explanation.latent_index).join(ExplanationScore, ExplanationScore.explanation_id == Explanation.id)
            .where(Explanation.source_id == source_id, ExplanationScore.status == "ok",
                   ExplanationScore.score > ExplanationScore.baseline_score).distinct()
        )  # fmt: skip
        with self._read() as session:
            return set(session.scalars(query))

    # moderation

    def add_report(self, explanation_id: int, reporter_id: int, reason: str) -> int:
        reason = (reason or "").strip()[:1000] or "no reason given"
        with self._begin() as session:
            if session.get(Explanation, explanation_id) is None:
                raise MissingError(f"no explanation {explanation_id}")
            open_one = select(Report.id).where(Report.explanation_id == explanation_id, Report.reporter_id == reporter_id,
                                               Report.status == "open")  # fmt: skip
            existing = session.scalar(open_one)
            if existing is not None:
                return existing
            row = Report(explanation_id=explanation_id, reporter_id=reporter_id, reason=reason, status="open")
            session.add(row)
            session.flush()
            return row.id

    def reports(self, status: str | None = "open") -> list[ReportRecord]:
        reporter = User.__table__.alias("reporter")
        author = User.__table__.alias("author")
        query = (
            select(Report, reporter.c.username, Explanation.text, author.c.username, Source.model_id, Source.name,
                   Explanation.latent_index, Hidden.data)
            .join(reporter, reporter.c.id == Report.reporter_id)
            .outerjoin(Explanation, Explanation.id == Report.explanation_id)
            .outerjoin(Hidden, Hidden.explanation_id == Report.explanation_id)
            .outerjoin(author, author.c.id == func.coalesce(Explanation.author_id, Hidden.author_id))
            .outerjoin(Source, Source.id == func.coalesce(Explanation.source_id, Hidden.source_id))
            .order_by(Report.id)
        )  # fmt: skip
        if status is not None:
            query = query.where(Report.status == status)
        with self._read() as session:
            out = []
            for r, reporter_name, text, author_name, model_id, source, index, hidden in session.execute(query):
                if text is None and hidden:
                    text, index = hidden["explanation"]["text"], hidden["explanation"]["latent_index"]
                out.append(ReportRecord(r.id, r.explanation_id, reporter_name, r.reason, r.status, text, author_name,
                                        model_id, source, index, utc(r.created_at)))  # fmt: skip
            return out

    def resolve_reports(self, explanation_id: int, status: str, moderator_id: int | None) -> int:
        if status not in REPORT_STATES:
            raise CommunityError(f"unknown report status {status!r}")
        with self._begin() as session:
            rows = session.scalars(select(Report).where(Report.explanation_id == explanation_id)).all()
            for row in rows:
                row.status, row.resolved_by = status, moderator_id
            return len(rows)

    def hide_explanation(self, explanation_id: int, moderator_id: int | None) -> bool:
        """Take an explanation out of the atlas (row, scores and votes kept in game_hidden)."""
        with self._begin() as session:
            row = session.get(Explanation, explanation_id)
            if row is None:
                return False
            columns = ("id", "source_id", "latent_index", "text", "method", "explainer_model", "prompt_version", "author_id", "details")
            scores = session.scalars(select(ExplanationScore).where(ExplanationScore.explanation_id == explanation_id)).all()
            votes = session.scalars(select(Vote).where(Vote.explanation_id == explanation_id)).all()
            score_columns = [c.name for c in ExplanationScore.__table__.columns if c.name not in ("id", "created_at")]
            data = {
                "explanation": {c: getattr(row, c) for c in columns} | {"created_at": utc(row.created_at).isoformat()},
                "scores": [{c: getattr(s, c) for c in score_columns} for s in scores],
                "votes": [[v.user_id, v.value] for v in votes],
            }
            session.add(Hidden(explanation_id=row.id, source_id=row.source_id, latent_index=row.latent_index,
                               author_id=row.author_id, data=data, hidden_by=moderator_id))  # fmt: skip
            session.execute(delete(Vote).where(Vote.explanation_id == explanation_id))
            session.execute(delete(ExplanationScore).where(ExplanationScore.explanation_id == explanation_id))
            session.delete(row)
            return True

    def author_of(self, explanation_id: int) -> int | None:
        """The author of an explanation, shown or hidden (None: automatic, or unknown)."""
        with self._read() as session:
            found = session.scalar(select(Explanation.author_id).where(Explanation.id == explanation_id))
            if found is None:
                found = session.scalar(select(Hidden.author_id).where(Hidden.explanation_id == explanation_id))
            return found

    def restore_explanation(self, explanation_id: int) -> bool:
        """Put a hidden explanation back under its own id, with its scores and votes."""
        with self._begin() as session:
            hidden = session.get(Hidden, explanation_id)
            if hidden is None:
                return False
            values = dict(hidden.data["explanation"])
            values["created_at"] = datetime.fromisoformat(values["created_at"])
            users = set(session.scalars(select(User.id)))
            if values.get("author_id") not in users:
                values["author_id"] = None
            if session.get(Source, values["source_id"]) is not None:
                session.execute(insert(Explanation).values(**values))
                for score in hidden.data["scores"]:
                    session.add(ExplanationScore(**score))
                for user_id, value in hidden.data["votes"]:
                    if user_id in users:
                        session.add(Vote(user_id=user_id, explanation_id=explanation_id, value=value))
            session.delete(hidden)
            return True

    # invites, prefs, accounts

    def new_invite(self, created_by: int | None) -> str:
        code = "inv_" + security.new_token(12)
        with self._begin() as session:
            session.add(Invite(code=code, created_by=created_by))
        return code

    def invites(self) -> list[dict[str, Any]]:
        query = select(Invite.code, Invite.created_at, Invite.used_at, User.username).outerjoin(User, User.id == Invite.used_by).order_by(Invite.created_at)
        with self._read() as session:
            return [{"code": c, "created_at": utc(t), "used_at": utc(u), "used_by": name} for c, t, u, name in session.execute(query)]

    def use_invite(self, code: str, username: str, password: str) -> Any:
        """Create the user `username` with the unused invite `code` (both or neither)."""
        with self._begin() as session:
            invite = session.get(Invite, code or "")
            if invite is None or invite.used_by is not None or invite.used_at is not None:
                raise CommunityError("this invite code is unknown or already used")
            invite.used_at = utcnow()
        try:
            user = self.store.add_user(username, password)
        except CommunityError:
            with self._begin() as session:
                session.get(Invite, code).used_at = None
            raise
        with self._begin() as session:
            session.get(Invite, code).used_by = user.id
        return user

    def prefs(self, user_id: int) -> tuple[str, bool]:
        return self._hot(hot_reads.read_prefs, user_id)

    def set_prefs(self, user_id: int, *, mode: str | None = None, tutorial_done: bool | None = None) -> tuple[str, bool]:
        if mode is not None and mode not in ("simple", "advanced"):
            raise CommunityError(f"mode is 'simple' or 'advanced', not {mode!r}")
        with self._begin() as session:
            row = session.get(Prefs, user_id)
            if row is None:
                row = Prefs(user_id=user_id, mode="simple", tutorial_done=False)
                session.add(row)
            if mode is not None:
                row.mode = mode
            if tutorial_done is not None:
                row.tutorial_done = tutorial_done
            return row.mode, row.tutorial_done

    def delete_account(self, user_id: int, *, remove_content: bool) -> dict[str, int]:
        """Delete a user. Their plays, votes, comments, lists, reports and sessions go with the
        account; their explanations are deleted (`remove_content`) or kept anonymous."""
        with self._begin() as session:
            user = session.get(User, user_id)
            if user is None:
                raise MissingError(f"no user {user_id}")
            mine = list(session.scalars(select(Explanation.id).where(Explanation.author_id == user_id)))
            if remove_content and mine:
                session.execute(delete(Vote).where(Vote.explanation_id.in_(mine)))
                session.execute(delete(ExplanationScore).where(ExplanationScore.explanation_id.in_(mine)))
                session.execute(delete(Explanation).where(Explanation.id.in_(mine)))
            else:
                for row in session.scalars(select(Explanation).where(Explanation.author_id == user_id)):
                    row.author_id = None
                    row.details = {**(row.details or {}), "author": "deleted account"}
            session.execute(delete(Hidden).where(Hidden.author_id == user_id))
            session.delete(user)
            return {"explanations": len(mine), "removed": len(mine) if remove_content else 0}


DEFAULT_CAMPAIGN = ("l8-neurons", "Layer 8 neurons", "8-mlp")  # what the default atlas ships


def ensure_default_campaign(store: Any, model_id: str) -> CampaignRecord | None:
    """The default atlas's campaign (its layer-8 neurons, unexplained first); made once."""
    slug, title, source_name = DEFAULT_CAMPAIGN
    games = GameStore(store)
    found = [c for c in games.list_campaigns() if c.slug == slug]
    if found:
        return found[0]
    source = store.get_source(model_id, source_name)
    return None if source is None else games.add_campaign(slug, title, source.id, order="unexplained")
