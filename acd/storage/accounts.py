"""Storage: people who sign in to the web panels, and their browser sessions.

Passwords are kept only as argon2id hashes (argon2-cffi, its default parameters); a session
is a random secret in an HttpOnly cookie of which only the SHA-256 is stored, with its own
CSRF token. The tables live on the shared `metadata` so the schema check sees them; they are
built by migration `0002` on the `accounts` branch.

    accounts = Accounts(store)
    await accounts.create("anna", "s3cret", "manager", manager_id="anna")
    account = await accounts.check_password("anna", "s3cret")   # Account | None
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from acd.core.model import Contact
from acd.storage import tables as t
from acd.storage.store import Conflict, Store, _contact_from_row

__all__ = ["Account", "Accounts", "Conflict", "Session"]

ROLES: Final = ("manager", "supervisor", "admin")

accounts = sa.Table(
    "accounts",
    t.metadata,
    sa.Column("username", sa.String(), primary_key=True),
    sa.Column("password_hash", sa.String(), nullable=False),
    sa.Column("role", sa.String(), nullable=False),
    sa.Column("manager_id", sa.String(), nullable=True),
    sa.Column("display_name", sa.Text(), nullable=False),
    sa.Column("created_at", sa.Double(), nullable=False),
    sa.Column("disabled_at", sa.Double(), nullable=True),
)

web_sessions = sa.Table(
    "web_sessions",
    t.metadata,
    # Only the SHA-256 of the cookie's secret: a stolen database opens no session.
    sa.Column("id_hash", sa.String(), primary_key=True),
    sa.Column("username", sa.String(), nullable=False),
    sa.Column("csrf", sa.String(), nullable=False),
    sa.Column("created_at", sa.Double(), nullable=False),
    sa.Column("expires_at", sa.Double(), nullable=False),
    sa.Column("last_seen_at", sa.Double(), nullable=False),
    sa.Index(None, "username"),
)


@dataclass(frozen=True, slots=True)
class Account:
    username: str
    role: str
    manager_id: str | None
    display_name: str
    created_at: float
    disabled: bool = False


@dataclass(frozen=True, slots=True)
class Session:
    account: Account
    csrf: str
    expires_at: float
    last_seen_at: float
    created_at: float  # the sign-in: the session's lifetime counts from it


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _account(row: sa.RowMapping) -> Account:
    return Account(
        row["username"],
        row["role"],
        row["manager_id"],
        row["display_name"],
        row["created_at"],
        row["disabled_at"] is not None,
    )


class Accounts:
    """The accounts repository, writing through the store's connections (and its SQLite
    writer queue). Hashing runs in a thread: argon2 is slow on purpose."""

    def __init__(self, store: Store, hasher: PasswordHasher | None = None) -> None:
        self._store = store
        self.hasher = hasher or PasswordHasher()
        self._dummy: str | None = None

    def _dummy_hash(self) -> str:
        # Verified against when the username is unknown, so both answers take as long.
        if self._dummy is None:
            self._dummy = self.hasher.hash(secrets.token_urlsafe(16))
        return self._dummy

    # ---- accounts ---------------------------------------------------------------------

    async def create(
        self, username: str, password: str, role: str, manager_id: str | None = None, display_name: str = ""
    ) -> Account:
        """Raises `Conflict` when the username is taken, `ValueError` on a bad role."""
        if role not in ROLES:
            raise ValueError(f"role: one of {', '.join(ROLES)}")
        if role == "manager" and not manager_id:
            raise ValueError("a manager account needs the manager it signs in as")
        hashed = await asyncio.to_thread(self.hasher.hash, password)
        row = {
            "username": username,
            "password_hash": hashed,
            "role": role,
            "manager_id": manager_id,
            "display_name": display_name,
            "created_at": time.time(),
            "disabled_at": None,
        }
        async with self._store._write() as conn:
            await conn.execute(accounts.insert(), row)
        return _account(row)  # type: ignore[arg-type]

    async def get(self, username: str) -> Account | None:
        row = await self._store._row(sa.select(accounts).where(accounts.c.username == username))
        return None if row is None else _account(row)

    async def all(self) -> list[Account]:
        return [_account(r) for r in await self._store._rows(sa.select(accounts).order_by(accounts.c.username))]

    async def update(
        self,
        username: str,
        *,
        password: str | None = None,
        role: str | None = None,
        manager_id: str | None = None,
        display_name: str | None = None,
        disabled: bool | None = None,
    ) -> Account | None:
        """Change what is given; a new password or disabling ends every session of the account."""
        values: dict[str, Any] = {}
        if password is not None:
            values["password_hash"] = await asyncio.to_thread(self.hasher.hash, password)
        if role is not None:
            if role not in ROLES:
                raise ValueError(f"role: one of {', '.join(ROLES)}")
            values["role"] = role
        if manager_id is not None:
            values["manager_id"] = manager_id or None
        if display_name is not None:
            values["display_name"] = display_name
        if disabled is not None:
            values["disabled_at"] = time.time() if disabled else None
        if values:
            async with self._store._write() as conn:
                await conn.execute(accounts.update().where(accounts.c.username == username).values(**values))
                if password is not None or disabled:
                    await conn.execute(web_sessions.delete().where(web_sessions.c.username == username))
        return await self.get(username)

    async def check_password(self, username: str, password: str) -> Account | None:
        """The account when the password is right and the account enabled; else None."""
        row = await self._store._row(sa.select(accounts).where(accounts.c.username == username))
        stored = row["password_hash"] if row is not None else self._dummy_hash()
        try:
            await asyncio.to_thread(self.hasher.verify, stored, password)
        except (VerificationError, InvalidHashError):
            return None
        if row is None or row["disabled_at"] is not None:
            return None
        if self.hasher.check_needs_rehash(stored):
            await self.update(username, password=password)
        return _account(row)

    # ---- sessions ---------------------------------------------------------------------

    async def open_session(self, username: str, ttl: float) -> tuple[str, str]:
        """A new session: `(secret for the cookie, CSRF token)`."""
        secret, csrf, now = secrets.token_urlsafe(32), secrets.token_urlsafe(32), time.time()
        async with self._store._write() as conn:
            await conn.execute(web_sessions.delete().where(web_sessions.c.expires_at < now))
            await conn.execute(
                web_sessions.insert(),
                {
                    "id_hash": _hash(secret),
                    "username": username,
                    "csrf": csrf,
                    "created_at": now,
                    "expires_at": now + ttl,
                    "last_seen_at": now,
                },
            )
        return secret, csrf

    async def session(self, secret: str, now: float | None = None) -> Session | None:
        """The live session behind a cookie's secret, with its (enabled) account."""
        now = time.time() if now is None else now
        query = (
            sa.select(web_sessions, accounts)
            .join(accounts, accounts.c.username == web_sessions.c.username)
            .where(web_sessions.c.id_hash == _hash(secret), web_sessions.c.expires_at > now)
        )
        row = await self._store._row(query)
        if row is None or row["disabled_at"] is not None:
            return None
        return Session(
            _account(row), row["csrf"], row["expires_at"], row["last_seen_at"], row[web_sessions.c.created_at]
        )

    async def touch_session(self, secret: str, now: float, expires_at: float) -> None:
        statement = (
            web_sessions.update()
            .where(web_sessions.c.id_hash == _hash(secret))
            .values(last_seen_at=now, expires_at=expires_at)
        )
        async with self._store._write() as conn:
            await conn.execute(statement)

    async def close_session(self, secret: str) -> bool:
        async with self._store._write() as conn:
            result = await conn.execute(web_sessions.delete().where(web_sessions.c.id_hash == _hash(secret)))
        return result.rowcount == 1

    # ---- the client card's history ----------------------------------------------------

    async def earlier_contacts(self, contact: Contact, limit: int = 20) -> list[Contact]:
        """The same customer's other contacts, newest first: those of the contact's customer,
        and those without a customer that have its phone or e-mail.

        The CRM gives every contact with a phone or e-mail the customer who holds it, so
        contacts sharing one share their customer; only contacts the CRM never saw have none
        (callbacks, contacts from before it, one whose look-up failed), and those are matched
        by phone or e-mail as they stand. A contact whose phone the CRM holds for another
        customer is that customer's. Each part is the look-up of an index a new lead enters
        only through its customer (acd.storage.tables.contacts): a scan of the phones and
        e-mails of every contact took 100 ms on a year of data."""
        c = t.contacts.c
        unknown = c.customer_id.is_(None)  # in each part, so that the partial indexes serve it
        same = [c.customer_id == contact.customer_id] if contact.customer_id else []
        if contact.phone:
            same.append(sa.and_(unknown, c.phone == contact.phone))
        if contact.email:
            same.append(sa.and_(unknown, c.email == contact.email))
        if not same:
            return []
        query = sa.select(t.contacts).where(sa.or_(*same), c.id != contact.id).order_by(c.seq.desc()).limit(limit)
        return [_contact_from_row(r) for r in await self._store._rows(query)]
