"""API keys: refused at start-up when unusable; tenant keys, operator keys, and the open gateway."""

from __future__ import annotations

import asyncio

import pytest
from fastapi import FastAPI
from pydantic import ValidationError

from gateway.api.deps import AdminDep
from gateway.auth import Authenticator, Caller
from gateway.errors import GatewayError
from gateway.settings import Settings
from tests.gateway.inprocess import gateway, settings_for


@pytest.mark.parametrize(("value", "complaint"), [
    ("acme:", "entry 1 of VISIONRAG_API_KEYS has an empty key"),  # `acme:$UNSET_VARIABLE`
    ("acme:sk-1,,globex:sk-2", "entry 2 of VISIONRAG_API_KEYS has an empty key"),
    ("acme:sk-1,", "entry 2 of VISIONRAG_API_KEYS has an empty key"),
    (",", "entry 1 of VISIONRAG_API_KEYS has an empty key"),
    ('["acme:sk-1", ""]', "entry 2 of VISIONRAG_API_KEYS has an empty key"),
    (":sk-1", "entry 1 of VISIONRAG_API_KEYS has an empty tenant"),
    ("acme: sk-1", "entry 1 of VISIONRAG_API_KEYS contains whitespace"),
    ("acme:sk 1", "entry 1 of VISIONRAG_API_KEYS contains whitespace"),
    ("acme:sk-1,globex:sk-1", "entry 2 of VISIONRAG_API_KEYS gives an earlier entry's key to another tenant"),
])
def test_unusable_api_keys_are_refused_at_start_up(monkeypatch, value, complaint):
    monkeypatch.setenv("VISIONRAG_API_KEYS", value)
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None)
    assert complaint in str(caught.value)
    assert "sk-1" not in str(caught.value)  # the message never repeats a key


@pytest.mark.parametrize("value", ["sk-admin,,sk-other", "sk-admin,", "sk admin"])
def test_unusable_admin_keys_are_refused_at_start_up(monkeypatch, value):
    monkeypatch.setenv("VISIONRAG_ADMIN_KEYS", value)
    with pytest.raises(ValidationError, match="of VISIONRAG_ADMIN_KEYS"):
        Settings(_env_file=None)


def test_unset_and_blank_keys_mean_an_open_gateway(monkeypatch):
    monkeypatch.setenv("VISIONRAG_API_KEYS", "")  # `VISIONRAG_API_KEYS=` as in .env.example
    monkeypatch.setenv("VISIONRAG_ADMIN_KEYS", " ")
    settings = Settings(_env_file=None)
    assert settings.api_keys == [] and settings.admin_keys == []


KEYED = Authenticator({"sk-acme": "acme", "sk-old": "default"}, "default", ["sk-ops"])


def bearer(key: str) -> str:
    return f"Bearer {key}"


def status_of(call) -> int:
    try:
        call()
    except GatewayError as exc:
        return exc.status
    return 200


@pytest.mark.parametrize(("authorization", "tenant_status", "admin_status"), [
    (None, 401, 401),
    ("Bearer", 401, 401),          # `Bearer ` with an empty token: never matches anything
    ("Bearer ", 401, 401),
    ("Basic sk-acme", 401, 401),
    (bearer("wrong"), 401, 401),
    (bearer("sk-acme"), 200, 403),  # a tenant's key on an operator route
    (bearer("sk-ops"), 403, 200),   # an operator key on a tenant route
])
def test_keyed_gateway_tells_tenants_operators_and_strangers_apart(authorization, tenant_status, admin_status):
    assert status_of(lambda: KEYED.tenant_for(authorization)) == tenant_status
    assert status_of(lambda: KEYED.require_admin(authorization)) == admin_status


def test_the_open_gateways_tenant_stays_reachable_with_a_default_key():
    # Exchanges recorded while the gateway was open belong to tenant `default`; a `default:` key reads them.
    open_gateway = Authenticator({}, "default")
    assert open_gateway.tenant_for(None) == open_gateway.tenant_for(bearer("anything")) == "default"
    assert KEYED.tenant_for(bearer("sk-old")) == "default"
    assert KEYED.tenants == ["acme", "default"]


def test_open_gateway_lets_everyone_operate_until_any_key_exists():
    assert Authenticator({}, "default").caller(None) == Caller("default", admin=True)
    only_operators = Authenticator({}, "default", ["sk-ops"])
    assert only_operators.caller(None) == Caller("default", admin=False)  # tenant side still open
    assert only_operators.caller(bearer("sk-ops")) == Caller("default", admin=True)
    assert status_of(lambda: only_operators.require_admin(None)) == 401
    assert status_of(lambda: Authenticator({"k": "t"}, "default").require_admin(bearer("k"))) == 403
    assert not Authenticator({}, "default").presents_admin_key(None)  # /ready's detail needs a real key


def test_require_admin_guards_a_route_in_the_running_app(tmp_path):
    async def scenario() -> list[tuple[int, str | None]]:
        settings = settings_for(tmp_path, api_keys="acme:sk-acme", admin_keys="sk-ops")
        async with gateway(settings) as (app, client):
            operator_route(app)
            answers = []
            for headers in ({}, {"Authorization": "Bearer sk-acme"}, {"Authorization": "Bearer sk-ops"}):
                response = await client.get("/test-operator-only", headers=headers)
                code = response.json()["error"]["code"] if response.status_code != 200 else None
                answers.append((response.status_code, code))
            return answers

    assert asyncio.run(scenario()) == [(401, "invalid_api_key"), (403, "permission_denied"), (200, None)]


def operator_route(app: FastAPI) -> None:
    @app.get("/test-operator-only")
    async def _operator_only(_: AdminDep) -> dict[str, bool]:
        return {"ok": True}
