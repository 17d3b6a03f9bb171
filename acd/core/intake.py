"""Pure: what the policy derives from a contact's answers before it is queued.

Adapters call `qualify` before storing a new contact, so the stored row already carries
its required skills, priority and team, and a restart needs no second pass.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from acd.core.model import Contact, evolve
from acd.core.policy import Pool, RoutingPolicy


def derived(criteria: Mapping[str, str], policy: RoutingPolicy) -> tuple[frozenset[str], int, str | None]:
    """The skills, priority bonus and team that these answers call for."""
    skills: set[str] = set()
    for criterion, answers in policy.skills_by_answer.items():
        skills.update(answers.get(criteria.get(criterion, ""), ()))
    bonus = sum(answers.get(criteria.get(c, ""), 0) for c, answers in policy.priority_by_answer.items())
    return frozenset(skills), bonus, policy.default_team


def qualify(contact: Contact, policy: RoutingPolicy) -> Contact:
    """Add the skills and priority that the answers call for, and the default team.

    Example: with `skills_by_answer = {"purpose": {"training": ("training",)}}` a contact
    that answered purpose=training requires the skill "training".
    """
    skills, bonus, team = derived(contact.criteria, policy)
    return replace(
        contact,
        required_skills=contact.required_skills | skills,
        priority=contact.priority + bonus,
        team=contact.team or team,
    )


def entry_step(contact: Contact, policy: RoutingPolicy) -> Contact:
    """The contact at its entry escalation step (`entry_step_index`). An adapter that stores
    a new contact this way spares the dispatcher a second write when it arrives: the core
    then finds nothing to change."""
    step = entry_step_index(contact, policy)
    return evolve(contact, step=step) if step != contact.step else contact


def entry_step_index(contact: Contact, policy: RoutingPolicy) -> int:
    """The first escalation step whose ring can hold anybody for this new contact.

    A ring empty by construction (the preferred ring of a customer nobody is preferred for,
    the team ring of a contact with neither a team nor a preferred manager) is skipped the
    moment the contact arrives, whoever is logged in or not. A pinned contact starts at the
    first step: its pin decides, not the rings. A contact already past the first step (one
    being restored) stays where it is.
    """
    if contact.pinned_to or contact.step:
        return contact.step
    last = len(policy.steps) - 1
    step = 0
    while step < last and empty_by_construction(policy.steps[step].pool, contact):
        step += 1
    return step


def empty_by_construction(pool: Pool, c: Contact) -> bool:
    """Whether the ring can hold nobody for this contact, whoever is logged in."""
    if pool is Pool.PREFERRED:
        return not c.preferred
    if pool is Pool.TEAM:
        return not c.preferred and c.team is None
    return False
