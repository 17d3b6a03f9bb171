"""The CRM part: customers, deals and the funnel, repeat-customer routing, ratings from closed deals.

    identity.py   pure: phone numbers to E.164 and e-mail addresses, for recognition
    model.py      pure: customers, deals, stage history, vacations as values
    routing.py    pure: who a repeat customer's contact should reach first
    ratings.py    pure: win rates and deal sizes with shrinkage, intervals and decay
    provider.py   pure: `DealRatings`, the core's `RatingProvider` backed by ratings.py
    csvio.py      pure: CSV rows in (with a report of rejected rows) and out
    service.py    the CRM's use cases over a repository (the only module here that awaits)
    external/     an office's own CRM (Bitrix24, or any over HTTP): look-ups, write-back

The routing core never imports this package; the composition root hands the core a
`DealRatings` and the HTTP intake a `CrmService.enrich`.
"""
