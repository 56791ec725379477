"""Accounts in the store: users (Argon2id password hashes), login sessions and API keys.

Secrets go in as plain text and are kept only as hashes (see latentpedia.security); a token
or key is returned once, when it is made. Records never carry a hash.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update

from latentpedia import security
from latentpedia.errors import LatentpediaError
from latentpedia.store.base import StoreBase, to_record
from latentpedia.store.community_schema import ROLE_ADMIN, ROLE_USER, ApiKey, User, UserSession
from latentpedia.store.feature_rows import dbapi_connection
from latentpedia.store.hot_reads import user_by_key, user_by_session
from latentpedia.store.records import _Record
from latentpedia.store.schema import utcnow
from latentpedia.store.textcheck import check_text_value

USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,38}")
ROLES = (ROLE_ADMIN, ROLE_USER)
SESSION_DAYS = 14
MAX_PASSWORD_LENGTH = 1024
LAST_USED_RESOLUTION = timedelta(minutes=1)  # how stale api_keys.last_used_at may get


class CommunityError(LatentpediaError):
    """A request the community store refuses; `status` is the HTTP status it maps to."""

    status = 400


class ConflictError(CommunityError):
    status = 409


class ForbiddenError(CommunityError):
    status = 403


class MissingError(CommunityError, LookupError):
    status = 404


@dataclass(frozen=True)
class UserRecord(_Record):
    id: int
    username: str
    role: str  # "admin" | "user"
    created_at: datetime
    disabled: bool

    @property
    def is_admin(self) -> bool:
        return self.role == ROLE_ADMIN


@dataclass(frozen=True)
class ApiKeyRecord(_Record):
    id: int
    user_id: int
    name: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


def check_username(username: str) -> str:
    if not USERNAME.fullmatch(username or ""):
        raise CommunityError(
            f"invalid username {username!r}: use 1-39 letters, digits, '_', '.' or '-', starting with a letter or digit"
        )
    return username


def check_password(password: str) -> str:
    check_text_value("password", password or "")  # hashed, never stored, but must be valid Unicode
    if not security.MIN_PASSWORD_LENGTH <= len(password or "") <= MAX_PASSWORD_LENGTH:
        raise CommunityError(f"a password needs {security.MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters")
    return password


class AccountMethods(StoreBase):
    """Users, sessions and API keys; each call is one short transaction."""

    # users

    def add_user(self, username: str, password: str, role: str = ROLE_USER) -> UserRecord:
        """A new user (ConflictError if the name is taken; CommunityError for a bad name,
        a password shorter than 8 characters or an unknown role)."""
        check_username(username)
        check_password(password)
        if role not in ROLES:
            raise CommunityError(f"unknown role {role!r} (roles: {', '.join(ROLES)})")
        password_hash = security.hash_password(password)
        with self._begin() as session:
            if session.scalar(select(User.id).where(User.username == username)) is not None:
                raise ConflictError(f"user {username!r} exists")
            user = User(username=username, password_hash=password_hash, role=role, disabled=False)
            session.add(user)
            session.flush()
            return to_record(UserRecord, user)

    def get_user(self, username: str) -> UserRecord | None:
        with self._read() as session:
            user = session.scalars(select(User).where(User.username == username)).first()
            return None if user is None else to_record(UserRecord, user)

    def get_user_by_id(self, user_id: int) -> UserRecord | None:
        with self._read() as session:
            user = session.get(User, user_id)
            return None if user is None else to_record(UserRecord, user)

    def list_users(self) -> list[UserRecord]:
        with self._read() as session:
            return [to_record(UserRecord, u) for u in session.scalars(select(User).order_by(User.username))]

    def count_users(self) -> int:
        return len(self.list_users())

    def set_user(self, username: str, *, role: str | None = None, disabled: bool | None = None,
                 password: str | None = None) -> UserRecord:  # fmt: skip
        """Change a user's role, disabled flag or password (MissingError if unknown).
        Disabling a user or changing the password ends their sessions."""
        if role is not None and role not in ROLES:
            raise CommunityError(f"unknown role {role!r} (roles: {', '.join(ROLES)})")
        new_hash = None if password is None else security.hash_password(check_password(password))
        with self._begin() as session:
            user = session.scalars(select(User).where(User.username == username)).first()
            if user is None:
                raise MissingError(f"no user {username!r}")
            if role is not None:
                user.role = role
            if disabled is not None:
                user.disabled = disabled
            if new_hash is not None:
                user.password_hash = new_hash
            if disabled or new_hash is not None:
                session.execute(delete(UserSession).where(UserSession.user_id == user.id))
            return to_record(UserRecord, user)

    def authenticate(self, username: str, password: str) -> UserRecord | None:
        """The enabled user with this name and password, else None (same work either way)."""
        with self._read() as session:
            user = session.scalars(select(User).where(User.username == username)).first()
            stored = user.password_hash if user is not None else security.dummy_hash()
            ok = security.verify_password(stored, check_text_value("password", password or ""))
            if user is None or not ok or user.disabled:
                return None
            return to_record(UserRecord, user)

    # sessions

    def create_session(self, user_id: int, days: float = SESSION_DAYS) -> tuple[str, str]:
        """A new login session: (cookie token, CSRF token). The token is stored hashed."""
        token, csrf = security.new_token(), security.new_token()
        expires = utcnow() + timedelta(days=days)
        with self._begin() as session:
            session.add(UserSession(id=security.digest(token), user_id=user_id, csrf_token=csrf, expires_at=expires))
        return token, csrf

    def session_user(self, token: str) -> tuple[UserRecord, str] | None:
        """(user, CSRF token) of a live session token, else None (expired, unknown, disabled).
        One statement on the driver's connection (store/hot_reads.py): every signed-in request asks."""
        with dbapi_connection(self.engine) as conn:
            found = user_by_session(conn, self.dialect, security.digest(token or ""))
        if found is None or found[2] is None or found[2] <= utcnow():
            return None
        user = UserRecord(*found[0])
        return None if user.disabled else (user, found[1])

    def delete_session(self, token: str) -> None:
        with self._begin() as session:
            session.execute(delete(UserSession).where(UserSession.id == security.digest(token or "")))

    def purge_sessions(self) -> int:
        """Delete expired sessions; returns how many."""
        with self._begin() as session:
            return session.execute(delete(UserSession).where(UserSession.expires_at <= utcnow())).rowcount

    # API keys

    def create_api_key(self, user_id: int, name: str = "default") -> tuple[str, ApiKeyRecord]:
        """A new API key for the user: (the key, shown once; its record)."""
        key = security.new_api_key()
        with self._begin() as session:
            if session.get(User, user_id) is None:
                raise MissingError(f"no user with id {user_id}")
            row = ApiKey(user_id=user_id, name=(name or "default")[:200], key_hash=security.digest(key), prefix=key[:8])
            session.add(row)
            session.flush()
            return key, to_record(ApiKeyRecord, row)

    def api_key_user(self, key: str) -> UserRecord | None:
        """The enabled owner of an unrevoked key, else None; notes when the key was used (at most
        once per LAST_USED_RESOLUTION: the read is one statement on the driver's connection, the
        write a transaction only when the note is stale)."""
        now = utcnow()
        with dbapi_connection(self.engine) as conn:
            found = user_by_key(conn, self.dialect, security.digest(key or ""))
        if found is None:
            return None
        fields_, key_id, last = found
        user = UserRecord(*fields_)
        if user.disabled:
            return None
        if last is None or now - last > LAST_USED_RESOLUTION:
            with self._begin() as session:
                session.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=now))
        return user

    def list_api_keys(self, user_id: int) -> list[ApiKeyRecord]:
        query = select(ApiKey).where(ApiKey.user_id == user_id).order_by(ApiKey.id)
        with self._read() as session:
            return [to_record(ApiKeyRecord, k) for k in session.scalars(query)]

    def revoke_api_key(self, user_id: int, key: int | str) -> ApiKeyRecord:
        """Revoke one of the user's keys, named by id or prefix (MissingError if none;
        CommunityError if a prefix matches several)."""
        query = select(ApiKey).where(ApiKey.user_id == user_id)
        if isinstance(key, int) or str(key).isdigit():
            query = query.where(ApiKey.id == int(key))
        else:
            query = query.where(ApiKey.prefix == str(key)[:8])
        with self._begin() as session:
            rows = list(session.scalars(query))
            if not rows:
                raise MissingError(f"no API key {key!r}")
            if len(rows) > 1:
                raise CommunityError(f"prefix {key!r} names {len(rows)} keys; revoke by id")
            if rows[0].revoked_at is None:
                rows[0].revoked_at = utcnow()
            return to_record(ApiKeyRecord, rows[0])
