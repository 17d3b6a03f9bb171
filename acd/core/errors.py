"""Pure: the errors the core raises for requests it refuses.

    CoreError (code: a stable string the API returns)
    └── PresenceError (code "bad_transition": a presence change the table forbids)

Expected outcomes ("nobody free", "caller hung up") are values and events, never errors.
"""

from __future__ import annotations


class CoreError(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
