"""Webhooks signed with a shared key: an account may have Twilio sign its webhooks with a shared
key's secret instead of the auth token; each such request names the key and the algorithm in
`X-Twilio-Webhooks-Signature-Settings: key=<id>,algorithm=HMAC_SHA256`. `twilio.webhook_keys`
maps the key ids we accept to the environment variables holding their secrets; a request naming
any other key, or signed with anything but the named key's secret, gets 403. Requests without
the header are still checked against the auth token (HMAC-SHA1).

Twilio is played by the test: webhooks are signed with the twilio library's RequestValidator
as Twilio signs them (`twilio_fixtures.hook`), and its REST API is a local stand-in on
127.0.0.1, because the real Twilio cloud is unreachable from here."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from storage_fixtures import Backend
from twilio.request_validator import HMAC_SHA1, RequestValidator
from twilio_fixtures import OUR_NUMBER, PUBLIC, SID, TOKEN, hook, twilio_deployment, twilio_office, twiml

from acd.config import ConfigError, Deployment, load_deployment

REPO = Path(__file__).resolve().parent.parent
KEY_ID = "webhooks_sharedkey_office"
SECRET = "shared-key-secret"


def with_keys(base: str) -> Deployment:
    d = twilio_deployment(base)
    assert d.twilio is not None
    keys = {KEY_ID: "ACD_TWILIO_KEY", "webhooks_sharedkey_unset": "ACD_TWILIO_UNSET"}
    return replace(d, twilio=replace(d.twilio, webhook_keys=keys, webhook_secrets={KEY_ID: SECRET}))


CALL = {"CallSid": "CA8000", "From": "+79161238000", "To": OUR_NUMBER, "AccountSid": SID}


async def test_a_webhook_signed_with_a_known_shared_key_is_served(backend: Backend) -> None:
    async with twilio_office(backend, deployment=with_keys) as (r, _):
        status, body = await hook(r, "/twilio/voice", CALL, shared_key=(KEY_ID, SECRET))
        assert status == 200, body
        assert twiml(body).find("Gather") is not None or twiml(body).find("Redirect") is not None
        # the header may name the legacy algorithm with a shared key too: the library checks either
        status, _ = await hook(r, "/twilio/voice/wait", CALL, shared_key=(KEY_ID, SECRET), algorithm=HMAC_SHA1)
        assert status == 200
        # without the header, the auth token's signature still holds
        assert (await hook(r, "/twilio/voice/wait", CALL))[0] == 200


async def test_unknown_keys_and_wrong_secrets_are_refused_with_403(backend: Backend) -> None:
    async with twilio_office(backend, deployment=with_keys) as (r, _):
        wait = "/twilio/voice/wait"
        # a key id we do not know, however well signed with its own secret
        assert (await hook(r, wait, CALL, shared_key=("webhooks_sharedkey_other", "other")))[0] == 403
        # a key we know of whose secret is not in the environment
        assert (await hook(r, wait, CALL, shared_key=("webhooks_sharedkey_unset", "")))[0] == 403
        # the right key id, signed with another secret or with the auth token
        assert (await hook(r, wait, CALL, shared_key=(KEY_ID, "not-the-secret")))[0] == 403
        by_token = RequestValidator(TOKEN).compute_signature(PUBLIC + wait, CALL)
        assert (await hook(r, wait, CALL, signature=by_token, shared_key=(KEY_ID, SECRET)))[0] == 403
        # an algorithm the library does not know, and no signature at all
        sig = RequestValidator(SECRET).compute_signature(PUBLIC + wait, CALL, "HMAC_SHA256")
        assert (await hook(r, wait, CALL, signature=sig, shared_key=(KEY_ID, SECRET), algorithm="HMAC_MD5"))[0] == 403
        assert (await hook(r, wait, CALL, signature=None, shared_key=(KEY_ID, SECRET)))[0] == 403
        assert (await hook(r, wait, CALL, signature=sig, shared_key=(KEY_ID, SECRET)))[0] == 200  # as sent
        # a tampered form
        tampered = {**CALL, "From": "+70000000000"}
        assert (await hook(r, wait, tampered, signature=sig, shared_key=(KEY_ID, SECRET)))[0] == 403


async def test_without_webhook_keys_every_shared_key_is_refused(backend: Backend) -> None:
    async with twilio_office(backend) as (r, _):
        assert (await hook(r, "/twilio/voice", CALL, shared_key=(KEY_ID, SECRET)))[0] == 403
        assert (await hook(r, "/twilio/voice", CALL))[0] == 200


# ---- the configuration ---------------------------------------------------------------------


def write_config(tmp_path: Path, twilio: dict[str, Any]) -> Path:
    data = yaml.safe_load((REPO / "config" / "acd.example.yaml").read_text(encoding="utf-8"))
    data["flows_dir"] = str(REPO / "ivr_flows")
    data["twilio"] = {"enabled": True, "account_sid": SID, "public_url": PUBLIC, **twilio}
    path = tmp_path / "acd.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def test_webhook_keys_take_their_secrets_from_the_environment_only(tmp_path: Path) -> None:
    path = write_config(tmp_path, {"webhook_keys": {KEY_ID: "ACD_TWILIO_KEY", "webhooks_sharedkey_b": "ACD_B"}})
    d = load_deployment(path, environ={"ACD_TWILIO_KEY": SECRET})
    assert d.twilio is not None
    assert dict(d.twilio.webhook_keys) == {KEY_ID: "ACD_TWILIO_KEY", "webhooks_sharedkey_b": "ACD_B"}
    assert dict(d.twilio.webhook_secrets) == {KEY_ID: SECRET}  # ACD_B is not set: that key is refused
    assert SECRET not in repr(d.twilio)


@pytest.mark.parametrize(
    "keys",
    [{KEY_ID: "not an env name"}, {"key,algorithm=x": "ACD_K"}, {KEY_ID: SECRET}],
)
def test_bad_webhook_keys_are_configuration_problems(tmp_path: Path, keys: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as caught:
        load_deployment(write_config(tmp_path, {"webhook_keys": keys}), environ={})
    assert any("webhook_keys" in p for p in caught.value.problems), caught.value.problems
