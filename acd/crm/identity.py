"""Pure: phone numbers and e-mail addresses in the one form recognition compares.

Phone numbers become E.164 through the phonenumbers library (libphonenumber's metadata), so
"+7 495 123-45-67", "8 (495) 123-45-67", "84951234567", "74951234567" and "4951234567"
are one number for a Russian deployment. E-mail addresses are compared case-insensitively.
"""

from __future__ import annotations

import re

import phonenumbers

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_DIGITS = re.compile(r"\d")


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


def normalize_email(raw: str) -> str | None:
    """The address in lower case without surrounding spaces, or None if it is not one."""
    text = raw.strip().lower()
    if text.startswith("mailto:"):
        text = text[7:]
    return text if _EMAIL.match(text) else None
