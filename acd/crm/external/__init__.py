"""External CRMs (Bitrix24, an office's own HTTP service): who a caller is there, and what
became of their contact, written back.

    base.py       pure: the adapter interface, its answers and errors, routing by an answer
    http.py       adapter: a generic CRM behind two URLs (look-up; a signed, idempotent webhook)
    bitrix24.py   adapter: Bitrix24's REST API through an inbound webhook
    sync.py       the look-up cache and timeout, the outbox worker, the commit watcher

The composition root builds an `ExternalSync` when `crm.external` is configured, hands it to
`CrmService` (look-ups while enriching contacts) and wraps the dispatcher's persistence in a
`FinishedFeed` (finished contacts into the outbox).
"""

from acd.crm.external.base import ExternalCrm, ExternalCrmError, ExternalMatch, Refused, Unavailable
from acd.crm.external.sync import ExternalSync, FinishedFeed, build_adapter

__all__ = [
    "ExternalCrm",
    "ExternalCrmError",
    "ExternalMatch",
    "ExternalSync",
    "FinishedFeed",
    "Refused",
    "Unavailable",
    "build_adapter",
]
