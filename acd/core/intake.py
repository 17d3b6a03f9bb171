"""Pure: what the policy derives from a contact's answers before it is queued.

Adapters call `qualify` before storing a new contact, so the stored row already carries
its required skills, priority and team, and a restart needs no second pass.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from acd.core.model import Contact
from acd.core.policy import RoutingPolicy


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
