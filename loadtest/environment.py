"""What a measurement ran on, recorded next to its numbers so results are compared like for like."""

from __future__ import annotations

import platform
from collections.abc import Sequence
from importlib import metadata


def package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"


def describe(packages: Sequence[str], **extra: str) -> dict[str, str]:
    """Python, the given packages' versions, the OS, and whatever else the caller depends on."""
    return {
        "python": platform.python_version(),
        **{name: package_version(name) for name in packages},
        "os": platform.platform(),
        **extra,
    }
