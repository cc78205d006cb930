"""`--reload`: new workers when a Python file of the app changes, as with `uvicorn --reload`.

A thread waits on watchfiles and hands each batch of changed source files to the acceptor's loop
through a pipe the loop selects on; the acceptor then reloads as on SIGHUP, so new code that does
not import leaves the workers that serve alone.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from osmium.config import ConfigError

log = logging.getLogger("osmium")

WATCHFILES_MISSING = "--reload needs watchfiles: pip install 'osmium[reload]'"
#: Folders never watched for source changes: caches, dependencies, virtual environments (their
#: code is in site-packages). Hidden folders (.git, .nox, .venv, ...) are skipped as well.
IGNORED_FOLDERS = frozenset({"__pycache__", "site-packages", "dist-packages", "node_modules"})
#: A batch of changes ends after STEP_MS without another change, or DEBOUNCE_MS after its first:
#: an editor's save, or a formatter run over several files, is one reload.
STEP_MS = 50
DEBOUNCE_MS = 1600
#: Changed files a log line names; the rest are counted.
NAMED_FILES = 5

WatchFunction = Callable[..., Iterator[set[tuple[Any, str]]]]


class _StopEvent:
    """watch()'s stop event. watchfiles asks it on every turn of its loop, the first once its
    watches are in place: that first question tells `start` that from then on every change is
    seen."""

    def __init__(self) -> None:
        self.asked = threading.Event()
        self.stop = threading.Event()

    def is_set(self) -> bool:
        self.asked.set()
        return self.stop.is_set()


class Reloader:
    """The watches on the source directories, the thread that waits on them, and the pipe that
    wakes the acceptor."""

    def __init__(self, directories: tuple[str, ...]) -> None:
        """Refuse, as a ConfigError, what cannot work: no watchfiles, a directory that is not."""
        self._watch = _watch_function()
        self.directories = _directories(directories)
        self._stop_event = _StopEvent()
        self._batches: queue.SimpleQueue[list[str]] = queue.SimpleQueue()
        self._error: Exception | None = None
        self._thread = threading.Thread(target=self._run, name="osmium-reloader")
        self.fd = self._wake_write = -1

    def start(self) -> None:
        """Watch from now on; a ConfigError if the watches cannot be placed (a permission, the
        system's limit on watches)."""
        self.fd, self._wake_write = os.pipe()
        for fd in (self.fd, self._wake_write):
            os.set_blocking(fd, False)
        self._thread.start()
        self._stop_event.asked.wait()
        if self._error is not None:
            self.stop()
            where = ", ".join(self.directories)
            raise ConfigError(f"--reload cannot watch {where}: {self._error}")
        log.info("reload: watching *.py under %s", ", ".join(self.directories))

    def stop(self) -> None:
        """The server stops: the thread ends (within STEP_MS) and the pipe closes."""
        self._stop_event.stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self._close_pipe()

    def close_in_child(self) -> None:
        """In a forked child (which has no watcher thread): none of the pipe's descriptors."""
        self._close_pipe()

    def _close_pipe(self) -> None:
        for fd in (self.fd, self._wake_write):
            if fd >= 0:
                os.close(fd)
        self.fd = self._wake_write = -1

    def changed(self) -> list[str]:
        """The source files changed since the last call, each relative to its directory."""
        with contextlib.suppress(BlockingIOError):
            os.read(self.fd, 4096)
        names: set[str] = set()
        with contextlib.suppress(queue.Empty):
            while True:
                names.update(self._batches.get_nowait())
        return sorted(names)

    # -- the watcher thread ----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            for changes in self._watch(
                *self.directories,
                watch_filter=None,
                debounce=DEBOUNCE_MS,
                step=STEP_MS,
                stop_event=self._stop_event,
                raise_interrupt=False,
            ):
                self._on_changes(path for _change, path in changes)
        except Exception as error:
            if self._stop_event.asked.is_set():
                log.error("reload: no longer watching for changes: %s", error)
            self._error = error
        finally:
            self._stop_event.asked.set()

    def _on_changes(self, paths: Iterable[str]) -> None:
        sources = {path: name for path in paths if (name := self._source_name(path)) is not None}
        if not sources:
            return
        for path in sources:
            _forget_bytecode(path)
        self._batches.put(list(sources.values()))
        with contextlib.suppress(BlockingIOError):  # a wake-up already waits: it is enough
            os.write(self._wake_write, b"\0")

    def _source_name(self, path: str) -> str | None:
        """`path` relative to the watched directory it is in, if it is a source file to reload."""
        roots = [root for root in self.directories if path.startswith(os.path.join(root, ""))]
        if not roots:
            return None
        name = os.path.relpath(path, max(roots, key=len))
        *folders, filename = name.split(os.sep)
        if any(folder.startswith(".") or folder in IGNORED_FOLDERS for folder in folders):
            return None
        # A leading dot or flycheck_: an editor's lock file or temporary copy, never a module.
        if not filename.endswith(".py") or filename.startswith((".", "flycheck_")):
            return None
        return name


def describe(names: list[str]) -> str:
    """`app.py`, `app.py, models.py`, or the first few and a count: one short line even when a
    checkout changes hundreds of files."""
    shown = ", ".join(names[:NAMED_FILES])
    more = len(names) - NAMED_FILES
    return f"{shown} and {more} more" if more > 0 else shown


def _watch_function() -> WatchFunction:
    try:
        from watchfiles import watch
    except ImportError:
        raise ConfigError(WATCHFILES_MISSING) from None
    # watchfiles logs each batch at info level; the acceptor's line names the files instead.
    logging.getLogger("watchfiles").setLevel(logging.WARNING)
    return watch


def _directories(given: tuple[str, ...]) -> tuple[str, ...]:
    """The directories to watch, absolute; none given: the working directory."""
    for directory in given:
        if not os.path.isdir(directory):
            problem = "not a directory" if os.path.exists(directory) else "no such directory"
            raise ConfigError(f"--reload-dir {directory}: {problem}")
    return tuple(os.path.abspath(directory) for directory in given or (os.getcwd(),))


def _forget_bytecode(path: str) -> None:
    """Drop the cached bytecode of a changed file: the cache is checked against the source's size
    and mtime in whole seconds, so a same-size edit within the second would load the old code."""
    with contextlib.suppress(OSError, NotImplementedError):  # no file; no cache at all
        os.unlink(importlib.util.cache_from_source(path))
