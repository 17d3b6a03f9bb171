"""Adapter: configuration as data — one YAML deployment file plus IVR flows in `ivr_flows/`.

    deployment = load_deployment("config/acd.example.yaml")   # raises ConfigError
    problems = check("config/acd.example.yaml")                # [] when valid

Exceptions:
    ConfigError            .problems: ["<file>: <dotted.key>: <what is wrong>", ...]
"""

from acd.config.deployment import (
    AmiSettings,
    AsteriskServer,
    AsteriskSettings,
    Criterion,
    CrmSettings,
    Deployment,
    FastAgiSettings,
    ManagerDefaults,
    Option,
    RateLimits,
    ServerSettings,
    Stage,
    Team,
    WebSettings,
)
from acd.config.errors import ConfigError
from acd.config.flows import IvrFlow, LanguageChoice, LanguageSelection, Prompt, Question
from acd.config.loader import DB_URL_ENV, check, load_deployment

__all__ = [
    "DB_URL_ENV",
    "AmiSettings",
    "AsteriskServer",
    "AsteriskSettings",
    "ConfigError",
    "Criterion",
    "CrmSettings",
    "Deployment",
    "FastAgiSettings",
    "IvrFlow",
    "LanguageChoice",
    "LanguageSelection",
    "ManagerDefaults",
    "Option",
    "Prompt",
    "Question",
    "RateLimits",
    "ServerSettings",
    "Stage",
    "Team",
    "WebSettings",
    "check",
    "load_deployment",
]
