"""Needs a database driver that is not installed (on purpose)."""

import psycopg_missing_for_osmium_tests  # type: ignore[import-not-found]  # noqa: F401


async def query() -> None:
    pass
