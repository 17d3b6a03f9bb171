"""Pure: what the policy derives from a contact's answers before it is queued.

Adapters call `qualify` before storing a new contact, so the stored row already carries
its required skills, priority and team, and a restart needs no second pass.
"""

from __future__ import annotations

from dataclasses import replace

from acd.core.model import Contact
from acd.core.policy import RoutingPolicy


def qualify(contact: Contact, policy: RoutingPolicy) -> Contact:
    """Add the skills and priority that the answers call for, and the default team.

    Example: with `skills_by_answer = {"purpose": {"training": ("training",)}}` a contact
    that answered purpose=training requires the skill "training".
    """
    skills = set(contact.required_skills)
    for criterion, answers in policy.skills_by_answer.items():
        skills.update(answers.get(contact.criteria.get(criterion, ""), ()))
    bonus = sum(answers.get(contact.criteria.get(c, ""), 0) for c, answers in policy.priority_by_answer.items())
    return replace(
        contact,
        required_skills=frozenset(skills),
        priority=contact.priority + bonus,
        team=contact.team or policy.default_team,
    )
