from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from tests.server_process import ServerProcess, running_server


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    """One osmium process serving the demo app over h2c for the whole test module."""
    with running_server() as process:
        yield process


@dataclass(frozen=True)
class TLSFiles:
    """PEM files made for this test session only; nothing is committed."""

    ca: Path
    certfile: Path
    keyfile: Path
    #: A key that belongs to another certificate (for the mismatch test).
    other_keyfile: Path


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    directory = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    other = ca.issue_cert("other.invalid")
    files = TLSFiles(
        ca=directory / "ca.pem",
        certfile=directory / "cert-chain.pem",
        keyfile=directory / "key.pem",
        other_keyfile=directory / "other-key.pem",
    )
    ca.cert_pem.write_to_path(str(files.ca))
    for blob in leaf.cert_chain_pems:
        blob.write_to_path(str(files.certfile), append=True)
    leaf.private_key_pem.write_to_path(str(files.keyfile))
    other.private_key_pem.write_to_path(str(files.other_keyfile))
    return files
