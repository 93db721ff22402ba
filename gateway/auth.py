"""Gateway API keys: who is calling, as a tenant name.

No keys configured means an open gateway (local use) where everyone is the default tenant.
The upstream's own key is never taken from the client: see `proxy.upstream`.
"""

from __future__ import annotations

from fastapi import Request

from gateway.errors import GatewayError


class Authenticator:
    def __init__(self, tenants_by_key: dict[str, str], default_tenant: str) -> None:
        self._tenants_by_key = dict(tenants_by_key)
        self._default = default_tenant

    @property
    def open(self) -> bool:
        return not self._tenants_by_key

    def tenant_for(self, authorization: str | None) -> str:
        """Return the caller's tenant, or raise a 401 that says what to send."""
        if self.open:
            return self._default
        if not authorization:
            raise GatewayError(
                401,
                "Missing API key: send `Authorization: Bearer <key>`.",
                code="invalid_api_key",
            )
        scheme, _, key = authorization.partition(" ")
        tenant = self._tenants_by_key.get(key.strip()) if scheme.lower() == "bearer" else None
        if tenant is None:
            raise GatewayError(401, "Invalid API key.", code="invalid_api_key")
        return tenant


async def require_tenant(request: Request) -> str:
    """FastAPI dependency: the caller's tenant (401 if a key is required and missing or wrong).

    Async on purpose: FastAPI runs a sync dependency in a worker thread, a hop that cost more
    than everything else the gateway does for a request.
    """
    authenticator: Authenticator = request.app.state.services.auth
    return authenticator.tenant_for(request.headers.get("authorization"))
