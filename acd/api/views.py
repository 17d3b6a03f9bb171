"""Adapter: core objects as the JSON the API returns."""

from __future__ import annotations

from typing import Any

from acd.core.events import Decision, Transition
from acd.core.model import Contact, Manager


def contact_json(c: Contact, now: float | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": c.id,
        "seq": c.seq,
        "channel": c.channel.value,
        "status": c.status.value,
        "arrived_at": c.arrived_at,
        "criteria": dict(c.criteria),
        "customer_id": c.customer_id,
        "name": c.customer_name,
        "phone": c.phone,
        "email": c.email,
        "priority": c.priority,
        "language": c.language,
        "required_skills": sorted(c.required_skills),
        "team": c.team,
        "first_wait": c.first_wait,
        "preferred": list(c.preferred),
        "offered_to": c.offered_to,
        "offer_expires_at": c.offer_expires_at,
        "assigned_to": c.assigned_to,
        "declined_by": sorted(c.declined_by),
        "step": c.step,
        "pinned_to": c.pinned_to,
        "pin_expires_at": c.pin_expires_at,
        "override": c.override,
        "outcome": c.outcome.value if c.outcome else None,
        "finished_at": c.finished_at,
        "note": c.payload.get("note", ""),
        # why the CRM sent a known customer where it did (a deal's stage, an account manager,
        # a pin, a stand-in), and the deal it routed by: for staff, never the public receipt
        "crm_reason": _text_or_none(c.payload.get("crm")),
        "deal_id": _text_or_none(c.payload.get("deal_id")),
    }
    if now is not None:
        out["waiting_seconds"] = round(max(0.0, now - c.arrived_at), 3)
    return out


def _text_or_none(value: object) -> str | None:
    return str(value) if value else None


def lead_receipt(c: Contact) -> dict[str, Any]:
    """What a public intake tells an anonymous caller about the contact it made. Not the
    contact: whether its customer was known, its priority and where it is routed are the
    business's own; and a honeypot's answer (acd.web.pages) has this shape too."""
    return {"id": c.id, "status": c.status.value}


def manager_json(m: Manager) -> dict[str, Any]:
    return {
        "id": m.id,
        "name": m.name,
        "team": m.team,
        "skills": dict(m.skills),
        "languages": sorted(m.languages),
        "capacity": {ch.value: n for ch, n in m.capacity.items()},
        "load": {ch.value: n for ch, n in m.load.items() if n},
        "device": m.device,
        "email": m.email,
        "order": m.order,
        "daily_cap": m.daily_cap,
        "presence": m.presence.value,
        "pause_reason": m.pause_reason,
        "presence_since": m.presence_since,
        "offer_contact_id": m.offer_contact_id,
        "missed_in_row": m.missed_in_row,
        "assigned_today": m.assigned_today,
        "handled_today": m.handled_today,
        "device_busy": m.device_busy,
        "active": m.active,
    }


def decision_json(d: Decision) -> dict[str, Any]:
    return {
        "id": d.id,
        "at": d.at,
        "contact_id": d.contact_id,
        "manager_id": d.manager_id,
        "kind": d.kind,
        "policy_version": d.policy_version,
        "strategy": d.strategy,
        "step": d.step,
        "pool": d.pool,
        "summary": d.summary,
        "candidates": [
            {"manager_id": c.manager_id, "score": c.score, "components": c.components} for c in d.candidates
        ],
        "filtered": d.filtered,
        "filtered_counts": d.filtered_counts,
        "shadow": None
        if d.shadow is None
        else {"version": d.shadow.version, "strategy": d.shadow.strategy, "manager_id": d.shadow.manager_id},
    }


def transition_json(t: Transition) -> dict[str, Any]:
    return {
        "manager_id": t.manager_id,
        "at": t.at,
        "from": t.old.value,
        "to": t.new.value,
        "reason": t.reason,
        "cause": t.cause,
    }
