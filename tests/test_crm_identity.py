"""Recognition keys: phone numbers in the usual Russian and international formats become one
E.164 number; e-mail addresses compare case-insensitively; the contacts of a batch that
share a key are one person."""

from __future__ import annotations

import phonenumbers
import pytest

from acd.crm import identity
from acd.crm.identity import dial_digits, keys, normalize_email, normalize_phone, owners


@pytest.mark.parametrize(
    "raw",
    [
        "+7 495 123-45-67",
        "+7 (495) 123-45-67",
        "8 (495) 123-45-67",
        "8-495-123-45-67",
        "84951234567",
        "74951234567",
        "4951234567",
        " 8 495 123 45 67 ",
        "+7\u00a0495\u00a01234567",
    ],
)
def test_a_moscow_number_in_every_usual_format_is_one_e164_number(raw: str) -> None:
    assert normalize_phone(raw, "RU") == "+74951234567"


def test_a_mobile_number_with_the_trunk_prefix_8_is_the_same_as_with_plus_7() -> None:
    assert normalize_phone("8-916-1234567") == normalize_phone("+79161234567") == "+79161234567"


def test_foreign_numbers_keep_their_country_with_plus_00_or_the_russian_810_prefix() -> None:
    assert normalize_phone("+44 20 7946 0958") == "+442079460958"
    assert normalize_phone("0044 20 7946 0958") == "+442079460958"
    assert normalize_phone("810 44 20 7946 0958") == "+442079460958"


def test_the_default_region_reads_numbers_written_without_a_country_code() -> None:
    assert normalize_phone("020 7946 0958", "GB") == "+442079460958"


@pytest.mark.parametrize("raw", ["", "12345", "abc", "+7 495", "not a phone 1"])
def test_what_is_not_a_phone_number_is_none(raw: str) -> None:
    assert normalize_phone(raw) is None


def test_email_addresses_are_trimmed_and_lower_cased_and_junk_is_refused() -> None:
    assert normalize_email("  Ivan.Petrov@Example.RU ") == "ivan.petrov@example.ru"
    assert normalize_email("mailto:a@b.ru") == "a@b.ru"
    assert normalize_email("ivan@") is None
    assert normalize_email("ivan petrov@example.ru") is None
    assert normalize_email("i" * 243 + "@example.ru") is not None  # 254 characters: the longest address
    assert normalize_email("i" * 244 + "@example.ru") is None


def test_contacts_of_a_batch_sharing_a_phone_or_an_email_are_one_person_and_a_known_one_wins() -> None:
    batch = [
        keys("8 916 100-00-01", None),  # 0: new
        keys(None, "Anna@Example.ru"),  # 1: new
        keys("+7 916 100-00-01", "anna@example.ru"),  # 2: shares a key with 0 (and one with 1)
        keys("+7 916 100-00-02", None),  # 3: known
        keys("not a phone", None),  # 4: nobody
    ]
    made: list[int] = []

    def new(i: int) -> str:
        made.append(i)
        return f"new-{i}"

    found = {("phone", "+79161000002"): "known"}
    assert owners(batch, found, new) == ["new-0", "new-1", "new-0", "known", None]
    assert made == [0, 1]  # one new person each for the first contacts that needed one


def test_a_dial_string_gets_ascii_digits_only() -> None:
    # str.isdigit takes "²" and other scripts' digits: no PBX dials them
    assert dial_digits("+7 (916) 555-00-00") == "79165550000"
    assert dial_digits("+7 916 555²00 ٠٠") == "791655500"


def test_a_number_seen_again_is_not_parsed_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """A customer's number comes back all day (calls, callbacks, repeat leads): it is parsed once."""
    identity.normalize_phone.cache_clear()
    parsed: list[str] = []
    parse = phonenumbers.parse

    def counted(text: str, region: str) -> phonenumbers.PhoneNumber:
        parsed.append(text)
        return parse(text, region)

    monkeypatch.setattr(phonenumbers, "parse", counted)
    assert [identity.normalize_phone("8 (916) 123-45-67") for _ in range(3)] == ["+79161234567"] * 3
    assert identity.normalize_phone("8 (916) 123-45-67", "KZ") == "+79161234567"  # another region: parsed
    assert len(parsed) == 2
