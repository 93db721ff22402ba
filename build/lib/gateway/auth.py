"""Gateway API keys: who is calling, as a tenant name, and whether they are an operator.

Tenant keys (`VISIONRAG_API_KEYS`) scope everything a client sees to its tenant. No tenant keys means
an open gateway (local use) where every caller is the default tenant, whatever key it sends.
Operator keys (`VISIONRAG_ADMIN_KEYS`) open the cross-tenant routes. With no key of either kind
configured, every caller is also the operator; once any key is configured, only operator keys are.
The upstream's own key is never taken from the client: see `proxy.upstream`. The routes' dependencies
(TenantDep, AdminDep, CallerDep) are in gateway.api.deps.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from gateway.errors import PermissionDenied, Unauthenticated


@dataclass(frozen=True, slots=True)
class Caller:
    # None: an operator key that belongs to no tenant (it may read totals, not a tenant's data).
    tenant: str | None
    admin: bool


def _missing() -> Unauthenticated:
    return Unauthenticated("Missing API key: send `Authorization: Bearer <key>`.", code="invalid_api_key")


def _invalid() -> Unauthenticated:
    return Unauthenticated("Invalid API key.", code="invalid_api_key")


class Authenticator:
    def __init__(self, tenants_by_key: dict[str, str], default_tenant: str,
                 admin_keys: Iterable[str] = ()) -> None:
        # Empty keys are refused by the settings; dropped here too, so that no header can match one.
        self._tenants_by_key = {k: t for k, t in tenants_by_key.items() if k}
        self._admin_keys = frozenset(k for k in admin_keys if k)
        self._default = default_tenant

    @property
    def open(self) -> bool:
        """No tenant keys: every caller is the default tenant."""
        return not self._tenants_by_key

    @property
    def tenants(self) -> list[str]:
        """Every tenant a caller can be: those with keys, and the default one (an open gateway's history)."""
        return sorted({*self._tenants_by_key.values(), self._default})

    @property
    def fully_open(self) -> bool:
        """No keys at all: every caller is also the operator."""
        return self.open and not self._admin_keys

    def caller(self, authorization: str | None) -> Caller:
        """Who is calling; raises 401 (no or unknown key) when the caller is neither tenant nor operator."""
        if self.fully_open:
            return Caller(self._default, admin=True)
        key = _bearer(authorization)
        admin = key is not None and key in self._admin_keys
        tenant = self._default if self.open else self._tenants_by_key.get(key or "")
        if tenant is None and not admin:
            raise _missing() if key is None else _invalid()
        return Caller(tenant, admin)

    def tenant_for(self, authorization: str | None) -> str:
        """Return the caller's tenant, or raise a 401 that says what to send (403 for an operator key)."""
        caller = self.caller(authorization)
        if caller.tenant is None:
            raise PermissionDenied("This is an operator key; tenant routes need a tenant's key.",
                               code="permission_denied")
        return caller.tenant

    def require_admin(self, authorization: str | None) -> None:
        """Pass operators; 401 without a valid key, 403 with a tenant's key."""
        if self.fully_open:
            return
        key = _bearer(authorization)
        if key is None:
            raise _missing()
        if key in self._admin_keys:
            return
        if key in self._tenants_by_key:
            raise PermissionDenied("This route needs an operator key (VISIONRAG_ADMIN_KEYS).",
                               code="permission_denied")
        raise _invalid()

    def presents_admin_key(self, authorization: str | None) -> bool:
        """True only for a configured operator key actually sent (never merely because the gateway is open)."""
        key = _bearer(authorization)
        return key is not None and key in self._admin_keys


def _bearer(authorization: str | None) -> str | None:
    """The token of `Authorization: Bearer <token>`; None when absent or empty, "" for another scheme."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer":
        return ""
    return token or None
