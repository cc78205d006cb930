"""The app module: it imports fine itself, its database module does not."""

from tests.integration.apps.missing_dependency import database


async def app(scope: dict, receive: object, send: object) -> None:
    await database.query()
