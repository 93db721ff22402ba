"""Fixtures shared by the whole suite: one real vLLM server per session, gateways on demand."""

pytest_plugins = [
    "tests.plugins.vllm_server",
    "tests.plugins.gateway_server",
    "tests.plugins.fake_upstream",
    "tests.plugins.media",
    "tests.plugins.loopback",
    "tests.plugins.moto_server",
    "tests.plugins.postgres",
]
