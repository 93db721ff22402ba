"""Fixtures of the serving tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.serving.loopback import Listener, serve_listener


@pytest.fixture
def listener() -> Iterator[Listener]:
    with serve_listener() as record:
        yield record
