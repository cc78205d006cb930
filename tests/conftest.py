from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.server_process import ServerProcess, running_server


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    """One osmium process serving the demo app over h2c for the whole test module."""
    with running_server() as process:
        yield process
