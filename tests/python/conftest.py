"""Fixtures for the Python client tests: real `lakehouse up` processes on port 0.

- `demo_server` (one per test module): a server with examples/*.csv ingested with metadata.
- `module_server` (one per test module): an empty server; the module ingests its own data.
- `server_factory` (per test): `server_factory()` starts a fresh server on a data dir of its
  own, for tests that restart, SIGKILL or wipe it. All are stopped when the test ends.

The binary is $LAKEHOUSE_BIN, else $CARGO_TARGET_DIR/debug/lakehouse; scripts/test.sh
builds it first. A missing binary fails the run rather than skipping it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterator

import pytest

from harness import LakehouseServer, write_big_csv
from harness import lakehouse_bin as find_lakehouse_bin

_live: list[LakehouseServer] = []


@pytest.fixture(scope="session")
def lakehouse_bin() -> Path:
    binary = find_lakehouse_bin()
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        pytest.fail(
            f"lakehouse binary not found at {binary}: build it with `cargo build -p lakehouse` "
            "or point LAKEHOUSE_BIN at it (scripts/test.sh does both)"
        )
    return binary


def _spawn(binary: Path, base: Path, name: str) -> LakehouseServer:
    server = LakehouseServer(binary, base, name=name)
    _live.append(server)
    return server.start()


def _shutdown(server: LakehouseServer, *, expect_alive: bool) -> None:
    """Stops a server at teardown; a server that died on its own fails the test."""
    died = server.proc is not None and server.proc.poll() is not None
    code = server.proc.returncode if died else None
    log = server.stderr_tail() if died else ""
    server.stop()
    if server in _live:
        _live.remove(server)
    if expect_alive and died:
        pytest.fail(f"{server.name} exited on its own with {code} during the tests.\nstderr:\n{log}")


@pytest.fixture(scope="module")
def demo_server(lakehouse_bin: Path, tmp_path_factory: pytest.TempPathFactory, request) -> Iterator[LakehouseServer]:
    module = request.module.__name__.rsplit(".", 1)[-1]
    server = _spawn(lakehouse_bin, tmp_path_factory.mktemp(f"demo-{module}"), f"demo server ({module})")
    try:
        server.ingest_demo()
        yield server
    finally:
        _shutdown(server, expect_alive=True)


@pytest.fixture(scope="module")
def module_server(lakehouse_bin: Path, tmp_path_factory: pytest.TempPathFactory, request) -> Iterator[LakehouseServer]:
    """An empty server shared by one test module, which ingests what it needs."""
    module = request.module.__name__.rsplit(".", 1)[-1]
    server = _spawn(lakehouse_bin, tmp_path_factory.mktemp(f"server-{module}"), f"server ({module})")
    try:
        yield server
    finally:
        _shutdown(server, expect_alive=True)


@pytest.fixture
def server_factory(lakehouse_bin: Path, tmp_path: Path) -> Iterator[Callable[..., LakehouseServer]]:
    made: list[LakehouseServer] = []

    def make(name: str = "server") -> LakehouseServer:
        server = _spawn(lakehouse_bin, tmp_path / f"{name}-{len(made)}", name)
        made.append(server)
        return server

    yield make
    for server in made:
        # Tests that SIGKILL a server restart it before they end; one found dead here crashed.
        _shutdown(server, expect_alive=server.proc is not None)


@pytest.fixture(scope="session")
def big_csv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, int]]:
    """A ~200 MB CSV (id,name,amount,city,note) with ids from 1_000_001, and its row count."""
    path = tmp_path_factory.mktemp("big") / "big.csv"
    rows = write_big_csv(path, 200 * 1024 * 1024, first_id=1_000_001)
    yield path, rows
    path.unlink(missing_ok=True)


def pytest_sessionfinish(session, exitstatus) -> None:
    # Never leave a server behind, whatever happened to the fixtures.
    for server in list(_live):
        try:
            server.kill()
        except BaseException:
            pass
