"""The routes' dependencies, declared once, and the one place that says where they come from.

`wire()` puts what the routes need on `app.state`; `create_app(settings)` calls it in its lifespan
with the runtime's objects. Any other app that mounts a router (tests', benchmarks') calls it with just
the parts it has:

    wire(app, settings=settings, auth=Authenticator(...), history=history, memory=memory)

The dependencies are async on purpose: FastAPI runs a sync dependency in a worker thread, a hop that
cost more than everything else the gateway does for a request.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, FastAPI, Request

from gateway import logs
from gateway.auth import Authenticator, Caller
from gateway.errors import Unavailable
from gateway.history.service import History
from gateway.memory.service import Memory
from gateway.proxy.chat import ChatProxy
from gateway.settings import Settings


def wire(
    app: FastAPI,
    *,
    settings: Settings,
    auth: Authenticator,
    chat: ChatProxy | None = None,
    history: History | None = None,
    memory: Memory | None = None,
) -> None:
    state = app.state
    state.settings = settings
    state.auth = auth
    state.chat = chat
    state.history = history
    state.memory = memory


async def get_authenticator(request: Request) -> Authenticator:
    return request.app.state.auth


async def require_tenant(request: Request) -> str:
    """The caller's tenant (401 if a key is required and missing or wrong)."""
    tenant = request.app.state.auth.tenant_for(request.headers.get("authorization"))
    logs.bind(tenant=tenant)
    return tenant


async def require_admin(request: Request) -> None:
    """For operator routes (401 without a key, 403 with a tenant's key)."""
    request.app.state.auth.require_admin(request.headers.get("authorization"))


async def identify_caller(request: Request) -> Caller:
    """For routes that answer tenants and operators differently."""
    return request.app.state.auth.caller(request.headers.get("authorization"))


async def get_chat(request: Request) -> ChatProxy:
    return chat_service(request)


def chat_service(request: Request) -> ChatProxy:
    """The chat service, read by the request path's routes themselves: FastAPI resolves each declared
    dependency anew on every request, a cost per chat the gateway does without here. Those routes still
    declare the tenant (TenantDep): the OpenAPI document reads from it who may call them."""
    return request.app.state.chat


async def get_history(request: Request) -> History:
    """The app's History: there whether memory is on or off."""
    return request.app.state.history


async def get_optional_memory(request: Request) -> Memory | None:
    return getattr(request.app.state, "memory", None)


async def get_memory(request: Request) -> Memory:
    """The app's started Memory; 503 when memory is off (or the app wired none)."""
    memory = await get_optional_memory(request)
    if memory is None:
        raise Unavailable("memory is disabled on this gateway (VISIONRAG_MEMORY_ENABLED=false)",
                          code="memory_disabled")
    return memory


TenantDep = Annotated[str, Depends(require_tenant)]
AdminDep = Annotated[None, Depends(require_admin)]
CallerDep = Annotated[Caller, Depends(identify_caller)]
ChatDep = Annotated[ChatProxy, Depends(get_chat)]
HistoryDep = Annotated[History, Depends(get_history)]
MemoryDep = Annotated[Memory, Depends(get_memory)]
OptionalMemoryDep = Annotated[Memory | None, Depends(get_optional_memory)]
AuthDep = Annotated[Authenticator, Depends(get_authenticator)]
