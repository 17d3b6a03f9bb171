"""Row ids are time-ordered, so new rows land at the end of their indexes."""

from __future__ import annotations

import re

from acd.ids import new_id


def test_new_ids_are_32_hex_digits_that_sort_in_the_order_they_were_made() -> None:
    ids = [new_id() for _ in range(10_000)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
