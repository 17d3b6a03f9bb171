"""Pure: phone numbers and e-mail addresses in the one form recognition compares, and which
contacts of a batch are one person.

Phone numbers become E.164 through the phonenumbers library (libphonenumber's metadata), so
"+7 495 123-45-67", "8 (495) 123-45-67", "84951234567", "74951234567" and "4951234567"
are one number for a Russian deployment. E-mail addresses are compared case-insensitively.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import phonenumbers

from acd.crm.model import Customer
from acd.ids import new_id

T = TypeVar("T")
Key = tuple[str, str]  # ("phone", E.164) or ("email", address): what recognition compares
NEW_CUSTOMER = "new customer"  # the contact's payload["crm"] when its customer was made for it

EMAIL_MAX = 254
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_DIGITS = re.compile(r"\d")
_NOT_DIALLED = re.compile(r"[^0-9]")
# Numbers normalised lately, per process: a customer's number comes back all day (their
# calls, callbacks, repeat leads, look-ups), and libphonenumber's parse costs tens of µs
# each time. About 2 MB when full.
PHONES_REMEMBERED = 8192


@functools.lru_cache(maxsize=PHONES_REMEMBERED)
def normalize_phone(raw: str, region: str = "RU") -> str | None:
    """The E.164 form of `raw`, or None when it is not a possible phone number.

    `region` (ISO 3166 alpha-2) reads numbers written without a country code, and its
    trunk prefix (8 in Russia) is dropped. "00" is read as the international prefix, as
    most of the world dials it. A number that is possible but not assigned in the
    numbering plan is still accepted: recognition must not depend on metadata freshness.

    >>> normalize_phone("8 (916) 123-45-67")
    '+79161234567'
    """
    text = raw.strip()
    if len(_DIGITS.findall(text)) < 7:
        return None
    if text.startswith("00"):
        text = "+" + text[2:]
    try:
        number = phonenumbers.parse(text, region.upper())
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def dial_digits(raw: str) -> str:
    """The ASCII digits of `raw`, all a dial string may carry: `str.isdigit` also takes "²"
    and other scripts' digits, which no PBX dials."""
    return _NOT_DIALLED.sub("", raw)


def normalize_email(raw: str) -> str | None:
    """The address in lower case without surrounding spaces, or None if it is not one (an
    address has at most 254 characters: RFC 5321's path limit, less its brackets)."""
    text = raw.strip().lower()
    if text.startswith("mailto:"):
        text = text[7:]
    return text if len(text) <= EMAIL_MAX and _EMAIL.match(text) else None


def keys(phone: str | None, email: str | None, region: str = "RU") -> list[Key]:
    """The keys a contact's phone and e-mail are recognised by (none for what is not one)."""
    out: list[Key] = []
    if phone and (number := normalize_phone(phone, region)):
        out.append(("phone", number))
    if email and (address := normalize_email(email)):
        out.append(("email", address))
    return out


def owners(keys_of: Sequence[Sequence[Key]], found: Mapping[Key, T], new: Callable[[int], T]) -> list[T | None]:
    """Each contact's owner, by its keys: the one `found` holds one of them, or else a new
    one, made by `new(i)` for the first contact i that needs it and shared by the contacts
    of the batch that share a key with it; None for a contact without keys."""
    made: dict[Key, T] = {}
    out: list[T | None] = []
    for i, held in enumerate(keys_of):
        owner = next((found[k] for k in held if k in found), None)
        if owner is None and held:
            owner = next((made[k] for k in held if k in made), None)
            if owner is None:
                owner = new(i)
            for k in held:
                made.setdefault(k, owner)
        out.append(owner)
    return out


def as_new_customers(payload: Mapping[str, Any]) -> dict[str, Any]:
    """A contact's payload once a customer was made for it."""
    return {**payload, "crm": NEW_CUSTOMER}


def stranger(name: str, criteria: Mapping[str, str], phone: str | None, email: str | None, now: float) -> Customer:
    """A new customer, made for the first contact of somebody nobody knows."""
    return Customer(
        id=new_id(),
        name=name,
        kind="person",
        phones=(phone,) if phone else (),
        emails=(email,) if email else (),
        criteria=dict(criteria),
        created_at=now,
    )
