"""Import the ASGI app named "module:attribute", with one-line errors for every way that fails.

When the app's own code raises (its module while it runs, or its factory), the frames of that code,
file and line, follow the line: a dependency missing three imports deep is found at once.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
import traceback
from types import ModuleType

from osmium.asgi import ASGIApp
from osmium.config import ConfigError

#: An ASGI app is called with (scope, receive, send).
ASGI_ARGUMENTS = 3


def import_app(spec: str, factory: bool = False) -> ASGIApp:
    """The app `spec` names; with `factory`, what calling that attribute with no arguments gives."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ConfigError(f"app {spec!r} must look like module:attribute")
    app = _attribute(_import_module(spec, module_name), module_name, attribute)
    if not callable(app):
        raise ConfigError(f"app {spec!r} is not callable")
    if factory:
        return _call_factory(spec, app)
    if _looks_like_factory(app):
        # Served as is, every request would be a TypeError and a 500.
        raise ConfigError(f"app {spec!r} looks like an app factory: use --factory")
    return app  # type: ignore[return-value]


def _import_module(spec: str, module_name: str) -> ModuleType:
    # Like `python -m`, the working directory is importable: `osmium serve myapp:app` just works.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(module_name)
    except Exception as error:
        frames = _app_frames(error)
        if isinstance(error, ModuleNotFoundError) and not frames:
            # None of the app's code ran: the module (or its package) itself is missing.
            raise ConfigError(
                f"cannot import app {spec!r}: no module named {error.name!r}"
            ) from None
        raise ConfigError(f"cannot import app {spec!r}: {_describe(error, frames)}") from None


def _attribute(module: ModuleType, module_name: str, attribute: str) -> object:
    app: object = module
    for part in attribute.split("."):
        try:
            app = getattr(app, part)
        except AttributeError:
            raise ConfigError(f"module {module_name!r} has no attribute {attribute!r}") from None
    return app


def _call_factory(spec: str, factory: object) -> ASGIApp:
    try:
        app = factory()  # type: ignore[operator]
    except Exception as error:
        raise ConfigError(
            f"app factory {spec!r} raised {_describe(error, _app_frames(error))}"
        ) from None
    if not callable(app):
        raise ConfigError(
            f"app factory {spec!r} returned {type(app).__name__}, not a callable ASGI app"
        )
    return app  # type: ignore[no-any-return]


def _looks_like_factory(app: object) -> bool:
    """A callable that can be called with no arguments but not with (scope, receive, send)."""
    try:
        signature = inspect.signature(app)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False  # no signature to judge by (a builtin, say): let it be served
    return _accepts(signature, 0) and not _accepts(signature, ASGI_ARGUMENTS)


def _accepts(signature: inspect.Signature, count: int) -> bool:
    try:
        signature.bind(*[None] * count)
    except TypeError:
        return False
    return True


def _app_frames(error: BaseException) -> traceback.StackSummary:
    """The error's traceback without the frames of osmium and of the import machinery."""
    return traceback.StackSummary.from_list(
        [
            frame
            for frame in traceback.extract_tb(error.__traceback__)
            if frame.filename not in (__file__, importlib.__file__)
            and not frame.filename.startswith("<frozen importlib")
        ]
    )


def _describe(error: BaseException, frames: traceback.StackSummary) -> str:
    """`Type: message`, then the app's frames (and a syntax error's own file and line)."""
    detail = frames.format()
    if isinstance(error, SyntaxError):
        # Its location is not a frame: the file did not compile. The last line repeats the error.
        detail += traceback.format_exception_only(error)[:-1]
    return f"{type(error).__name__}: {error}\n{''.join(detail)}".rstrip("\n")
