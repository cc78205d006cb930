"""osmium/app_loader.py: which callables are taken for app factories, and which are served."""

from __future__ import annotations

import functools
from typing import Any

import pytest

from osmium.app_loader import import_app
from osmium.config import ConfigError


async def asgi_function(scope: Any, receive: Any, send: Any) -> None:
    pass


async def asgi_with_defaults(scope: Any = None, receive: Any = None, send: Any = None) -> None:
    pass


async def asgi_star_args(*args: Any) -> None:
    pass


async def asgi_with_prefix(prefix: str, scope: Any, receive: Any, send: Any) -> None:
    pass


class ASGIClass:
    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        pass


class AppWithConfiguration:
    """Built with no arguments, then called as an app: the class itself is a factory."""

    def __init__(self, debug: bool = False) -> None:
        self.debug = debug

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        pass


def create_app() -> ASGIClass:
    return ASGIClass()


asgi_instance = ASGIClass()
asgi_partial = functools.partial(asgi_with_prefix, "/api")


@pytest.mark.parametrize(
    "spec",
    [
        f"{__name__}:asgi_function",
        f"{__name__}:asgi_with_defaults",
        f"{__name__}:asgi_star_args",
        f"{__name__}:asgi_instance",
        f"{__name__}:asgi_partial",
        "osmium.demo:app",
        "tests.integration.apps.asgi_apps:app",
        "tests.integration.apps.starlette_app:app",
    ],
)
def test_asgi_apps_are_served_as_they_are(spec: str) -> None:
    assert import_app(spec) is _attribute(spec)


@pytest.mark.parametrize("spec", [f"{__name__}:create_app", f"{__name__}:AppWithConfiguration"])
def test_zero_argument_callables_are_taken_for_factories(spec: str) -> None:
    with pytest.raises(ConfigError, match="looks like an app factory: use --factory"):
        import_app(spec)
    assert isinstance(import_app(spec, factory=True), (ASGIClass, AppWithConfiguration))


def _attribute(spec: str) -> object:
    module_name, _, attribute = spec.partition(":")
    return getattr(__import__(module_name, fromlist=[attribute]), attribute)
