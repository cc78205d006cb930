"""`osmium.admin.client`: the addresses `--admin` takes, and failures as one line to act on.

The answers of a live admin API (401, JSON) are checked against the real server in
tests/integration/test_admin_top.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from osmium.admin.client import SERVER_HINT, AdminAddress, AdminClient, AdminError, parse_address


def test_addresses() -> None:
    assert parse_address("http://127.0.0.1:9100") == AdminAddress(
        "http://127.0.0.1:9100", host="127.0.0.1", port=9100
    )
    assert parse_address("http://[::1]:9100/") == AdminAddress(
        "http://[::1]:9100/", host="::1", port=9100
    )
    assert parse_address("unix:/run/osmium.sock") == AdminAddress(
        "unix:/run/osmium.sock", socket_path="/run/osmium.sock"
    )


@pytest.mark.parametrize(
    "text",
    ["127.0.0.1:9100", "https://127.0.0.1:9100", "http://127.0.0.1", "http://h:99999",
     "http://127.0.0.1:9100/api", "unix:"],
)  # fmt: skip
def test_bad_addresses(text: str) -> None:
    with pytest.raises(ValueError, match="--admin"):
        parse_address(text)


def test_a_missing_unix_socket(tmp_path: Path) -> None:
    address = f"unix:{tmp_path / 'admin.sock'}"
    client = AdminClient(parse_address(address), None)
    with pytest.raises(AdminError) as raised:
        client.get("/api/state")
    assert str(raised.value) == (
        f"cannot reach the admin API at {address}: no such socket ({SERVER_HINT})"
    )
