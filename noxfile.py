"""Project tasks; `./scripts/nox -s bench` and `-s tests` are the README's quick start.

Every session installs what it needs itself: Python packages into its venv, and Debian's
nghttp2-client (h2load, nghttp) and curl when they are missing and we are root.
"""

from __future__ import annotations

import os
import shutil

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "tests"]

PYTHON = "3.11"
PYPROJECT = nox.project.load_toml("pyproject.toml")
TLS_BACKENDS = ("stdlib", "pyopenssl")
CLIENT_TOOLS = {"h2load": "nghttp2-client", "nghttp": "nghttp2-client", "curl": "curl"}
#: The admin tests drive the dashboard in a browser and `osmium top` in a terminal.
TEST_TOOLS = {**CLIENT_TOOLS, "chromium": "chromium", "tmux": "tmux"}


def ensure_client_tools(session: nox.Session) -> None:
    """h2load, nghttp and curl: apt-get them when root, otherwise say what to install."""
    ensure_tools(session, CLIENT_TOOLS)


def ensure_tools(session: nox.Session, tools: dict[str, str]) -> None:
    """Each command of `tools` (command -> Debian package) present, or a clear error."""
    missing = sorted({package for tool, package in tools.items() if not shutil.which(tool)})
    if not missing:
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        session.error(f"missing tools: install the Debian packages {' '.join(missing)}")
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    session.run("apt-get", "update", "-qq", external=True, env=env)
    session.run("apt-get", "install", "-y", "-qq", *missing, external=True, env=env)


def install_project(session: nox.Session, *groups: str) -> None:
    session.install("-e", ".[fast]")
    for group in groups:
        session.install(*nox.project.dependency_groups(PYPROJECT, group))


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The test suite: unit, conformance (raw frames) and integration (real clients)."""
    ensure_tools(session, TEST_TOOLS)
    install_project(session, "test")
    # pytest exits 5 when it collected nothing; nox fails on any non-zero status, so that fails too.
    session.run("pytest", *session.posargs)
    if not session.posargs:
        # The raw-frame conformance suite again, over TLS with each back-end.
        for backend in TLS_BACKENDS:
            env = {"OSMIUM_CONFORMANCE_TLS": backend}
            session.run("pytest", "-q", "tests/conformance", env=env)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.17,<0.18")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


#: What `bench -- --compare NAME` installs for the Python peers (loadtest/launcher.py's
#: PEER_MODULES, with the versions the comparison was written against).
PEER_PACKAGES = {
    "hypercorn": ("hypercorn>=0.16",),
    "uvicorn": ("uvicorn>=0.54", "zttp>=0.0.35"),
    "uvicorn-httptools": ("uvicorn>=0.30", "httptools>=0.6"),
    "granian": ("granian>=2",),
    "h2corn": ("h2corn>=2",),
}
#: What `bench -- --profile` records osmium's workers with (loadtest/profiler.py).
PROFILER_PACKAGES = ("py-spy>=0.3",)


def compared_peers(arguments: list[str]) -> list[str]:
    """The names given to the harness's `--compare` (it takes names up to the next option)."""
    names: list[str] = []
    taking = False
    for argument in arguments:
        if argument.startswith("--compare="):
            names.append(argument.partition("=")[2])
            taking = False
        elif argument.startswith("-"):
            taking = argument == "--compare"
        elif taking:
            names.append(argument)
    return names


def install_for(session: nox.Session, option: str, packages: tuple[str, ...]) -> None:
    """What a harness option needs, or one line naming the option when pip cannot get it."""
    try:
        session.install(*packages)
    except nox.command.CommandFailed:
        session.error(f"{option}: cannot install {' '.join(packages)} (pip above)")


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """The main job: h2load scenarios against the demo app, sampled; report in results/latest/.

    Arguments go to the harness: `-- --quick`, `-- --compare hypercorn`, `-- --repeats 5`, ...
    The Python peers named after `--compare`, and py-spy for `--profile`, are installed here first.
    """
    ensure_client_tools(session)
    install_project(session, "bench")
    for name in compared_peers(session.posargs):
        packages = PEER_PACKAGES.get(name)
        if packages is None:
            continue  # bare-h2 needs only osmium's h2; an unknown name is the harness's to refuse
        install_for(session, f"--compare {name}", packages)
    if "--profile" in session.posargs:
        install_for(session, "--profile", PROFILER_PACKAGES)
    session.run("python", "-m", "loadtest.bench", *session.posargs)


@nox.session(python=PYTHON)
def loadtest(session: nox.Session) -> None:
    """locust's HTTP/2 user journeys against osmium, sampled; report in results/latest/.

    Arguments go to the runner: `-- --users 100 --run-time 1m`, `-- --distributed 4`, ...
    """
    install_project(session, "loadtest")
    session.run("python", "-m", "loadtest.locust_run", *session.posargs)


@nox.session(python=PYTHON)
def gate(session: nox.Session) -> None:
    """Performance regression gate against loadtest/baseline.json (see loadtest/gate.py).

    `-- --metric instructions` is the deterministic part CI runs; `-- --update-baseline` rewrites
    the baseline; `-- --against REV` compares with a revision measured in the same run.
    """
    ensure_tools(session, {**CLIENT_TOOLS, "valgrind": "valgrind"})
    install_project(session, "bench")
    session.run("python", "-m", "loadtest.gate", *session.posargs)


@nox.session(python=PYTHON)
def serve(session: nox.Session) -> None:
    """Serve the demo app on 127.0.0.1:8000 (arguments replace the default --bind)."""
    install_project(session)
    session.run("osmium", "serve", *(session.posargs or ["--bind", "127.0.0.1:8000"]))


@nox.session(python=PYTHON)
def coverage(session: nox.Session) -> None:
    """The test suite under coverage.py: pytest, the servers it starts and their forked workers.

    coverage/coveragerc's process patching measures every `osmium serve` subprocess and worker;
    their data files are combined, then reported here and as HTML in htmlcov/. Arguments go to
    pytest (`./scripts/nox -s coverage -- tests/unit`). When tests fail, the report still comes,
    then the session fails.
    """
    ensure_client_tools(session)
    install_project(session, "test")
    rcfile = "--rcfile=coverage/coveragerc"
    session.run("coverage", "erase", rcfile)
    try:
        session.run("coverage", "run", rcfile, "-m", "pytest", *session.posargs)
        failed = False
    except nox.command.CommandFailed:
        failed = True
    session.run("coverage", "combine", rcfile)
    session.run("coverage", "report", rcfile)
    session.run("coverage", "html", rcfile)
    session.log(f"HTML report: {os.path.abspath('htmlcov/index.html')}")
    if failed:
        session.error("the tests failed (coverage report above)")


@nox.session(python=PYTHON)
def fuzz(session: nox.Session) -> None:
    """atheris (libFuzzer) on the HTTP/2 and HTTP/1.1 cores, 60 s per target (scripts/fuzz.py).

    Longer: `-- --seconds 600`; one target: `-- --target h2`; libFuzzer's own flags after a
    second `--`. Inputs that fail are saved in .fuzz/crashes/, and the session fails.
    """
    install_project(session)
    session.install("atheris>=2.3", "hyperframe>=6", "hpack>=4")
    session.run("python", "scripts/fuzz.py", *session.posargs)
