"""Import the ASGI app named "module:attribute", with one-line errors for every way that fails."""

from __future__ import annotations

import importlib
import os
import sys

from osmium.asgi import ASGIApp
from osmium.config import ConfigError


def import_app(spec: str) -> ASGIApp:
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ConfigError(f"app {spec!r} must look like module:attribute")
    # Like `python -m`, the working directory is importable: `osmium serve myapp:app` just works.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name and module_name.startswith(error.name):
            raise ConfigError(
                f"cannot import app {spec!r}: no module named {error.name!r}"
            ) from None
        raise ConfigError(f"cannot import app {spec!r}: {error}") from None
    except Exception as error:
        raise ConfigError(f"cannot import app {spec!r}: {type(error).__name__}: {error}") from None
    app: object = module
    for part in attribute.split("."):
        try:
            app = getattr(app, part)
        except AttributeError:
            raise ConfigError(f"module {module_name!r} has no attribute {attribute!r}") from None
    if not callable(app):
        raise ConfigError(f"app {spec!r} is not callable")
    return app  # type: ignore[return-value]
