"""The real stack for every test: a scratch database on the project's PostgreSQL holding dukasync's schema and
Django's side by side, the real `dukasync` binary serving it, and Django set up on it.

Settings come from the environment or the checkout's .dukasync/env (deploy/services.sh): DUKASYNC_DATABASE_URL,
and DUKASYNC_BIN (python/run-tests.sh builds it). Without a database the tests fail; they never skip.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]
JWT_SECRET = "tests-only-secret-of-at-least-32-bytes!"
JWT_AUDIENCE = "dukasync-tests"
STATE: dict[str, Any] = {}


def service_env() -> dict[str, str]:
    values: dict[str, str] = {}
    env_file = ROOT / ".dukasync" / "env"
    if env_file.exists():
        for line in env_file.read_text().splitlines():
            name, _, value = line.strip().removeprefix("export ").partition("=")
            if name.startswith("DUKASYNC_"):
                values[name] = value.strip('"')
    for name in ("DUKASYNC_DATABASE_URL", "DUKASYNC_REDIS_URL", "DUKASYNC_PG_BIN", "DUKASYNC_BIN"):
        if os.environ.get(name):
            values[name] = os.environ[name]
    if not values.get("DUKASYNC_DATABASE_URL"):
        raise RuntimeError("no DUKASYNC_DATABASE_URL: run `deploy/services.sh start` or export it")
    return values


def psql(url: str, sql: str, pg_bin: str | None) -> str:
    binary = str(Path(pg_bin) / "psql") if pg_bin else "psql"
    result = subprocess.run(
        [binary, "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", url, "-c", sql],
        check=True, capture_output=True, text=True,
    )
    return result.stdout


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def pytest_configure(config: pytest.Config) -> None:
    env = service_env()
    name = f"dukasync_test_py_{secrets.token_hex(6)}"
    psql(env["DUKASYNC_DATABASE_URL"], f"CREATE DATABASE {name}", env.get("DUKASYNC_PG_BIN"))
    url = with_database(env["DUKASYNC_DATABASE_URL"], name)
    STATE.update(env=env, name=name, url=url)
    binary = env.get("DUKASYNC_BIN") or str(ROOT / "target" / "debug" / "dukasync")
    child_env = {
        **os.environ,
        "DUKASYNC_DATABASE_URL": url,
        "DUKASYNC_LISTEN": "127.0.0.1:0",
        "DUKASYNC_LOG_FORMAT": "json",
        "DUKASYNC_LOG": "info,sqlx=warn",
        # JWTs of the Django sync-token view (protocol §3.2): the same secret and audience as tests/settings.py.
        "DUKASYNC_JWT_HS256_SECRET": JWT_SECRET,
        "DUKASYNC_JWT_AUDIENCE": JWT_AUDIENCE,
    }
    if env.get("DUKASYNC_REDIS_URL"):
        child_env["DUKASYNC_REDIS_URL"] = env["DUKASYNC_REDIS_URL"]
    STATE.update(binary=binary, child_env=child_env)
    cli("migrate")
    cli("demo-data")

    parts = urlsplit(url)
    os.environ.update(
        DJANGO_SETTINGS_MODULE="tests.settings",
        DUKASYNC_TEST_DB_NAME=name,
        DUKASYNC_TEST_DB_USER=parts.username or "",
        DUKASYNC_TEST_DB_PASSWORD=parts.password or "",
        DUKASYNC_TEST_DB_HOST=parts.hostname or "127.0.0.1",
        DUKASYNC_TEST_DB_PORT=str(parts.port or 5432),
        # A real Django-RQ worker runs the consumer job (test_consumer.py): the project's Redis, a queue of this run.
        DUKASYNC_TEST_RQ_URL=env.get("DUKASYNC_REDIS_URL", ""),
        DUKASYNC_TEST_RQ_QUEUE=f"dukasync-tests-{secrets.token_hex(4)}",
    )
    start_server()
    os.environ["DUKASYNC_TEST_URL"] = STATE["server_url"]
    os.environ["DUKASYNC_TEST_TOKEN"] = token("owner@duka.test", "erp-backend")

    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    # The ERP's own table reaches the phones by a capture trigger, installed by the real CLI as an operator would
    # (docs/backend-sql.md). `products` is also written by managers' devices, hence --allow-device-writes.
    cli("capture", "install", "--table", "erp_product", "--collection", "products", "--key", "id",
        "--scope-column", "business", "--columns", "name,price,active", "--allow-device-writes")


def pytest_unconfigure(config: pytest.Config) -> None:
    server = STATE.get("server")
    if server is not None and server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
    if "name" in STATE:
        from django.db import connections

        connections.close_all()
        env = STATE["env"]
        psql(env["DUKASYNC_DATABASE_URL"], f"DROP DATABASE IF EXISTS {STATE['name']} WITH (FORCE)",
             env.get("DUKASYNC_PG_BIN"))


def cli(*args: str) -> str:
    result = subprocess.run(
        [STATE["binary"], *args], env=STATE["child_env"], check=True, capture_output=True, text=True
    )
    return result.stdout


def token(email: str, device: str) -> str:
    return cli("token", "issue", "--email", email, "--device", device).strip()


def dexie_rows(token: str, scope: str, collection: str, *keys: str) -> dict[str, Any]:
    """The rows `keys` of `collection` as a real Dexie device holds them after pulling `scope` to its head: the
    reference JS client (client-fixtures) on a fresh fake IndexedDB, run by node. `None` for a row it lacks."""
    tool = ROOT / "client-fixtures" / "tools" / "dexie-rows.mjs"
    result = subprocess.run(
        ["node", str(tool), STATE["server_url"], token, scope, collection, *keys],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, f"the Dexie device failed:\n{result.stderr}"
    rows: dict[str, Any] = json.loads(result.stdout)
    return rows


def start_server() -> None:
    server = subprocess.Popen(
        [STATE["binary"], "serve"], env=STATE["child_env"], stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    STATE["server"] = server
    address: list[str] = []
    listening = threading.Event()
    log: list[str] = []

    def read_log() -> None:
        # Drains the server's log for the whole run, so it never blocks on a full pipe.
        assert server.stderr is not None
        for line in server.stderr:
            log.append(line)
            del log[:-200]
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("fields", {}).get("message") == "dukasync listening":
                address.append(record["fields"]["address"])
                listening.set()
        listening.set()

    threading.Thread(target=read_log, daemon=True).start()
    listening.wait(timeout=120)
    if not address:
        raise RuntimeError("server did not start:\n" + "".join(log))
    url = f"http://{address[0]}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"{url}/readyz") as response:
                if response.status == 200:
                    break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)  # polling an observable state (readiness), bounded by the deadline
    STATE["server_url"] = url


@pytest.fixture(scope="session")
def dukasync_cli() -> Callable[..., str]:
    """The real `dukasync` CLI on the test database (e.g. `user-add ... --external-id`)."""
    return cli


@pytest.fixture(scope="session")
def server_url() -> str:
    return str(STATE["server_url"])


@pytest.fixture(scope="session")
def owner_token() -> str:
    return str(os.environ["DUKASYNC_TEST_TOKEN"])


@pytest.fixture
def cashier_token() -> str:
    return token("cashier.water@duka.test", f"till-{secrets.token_hex(4)}")


@pytest.fixture
def database_url() -> str:
    return str(STATE["url"])


@pytest.fixture
def pg_bin() -> str | None:
    return STATE["env"].get("DUKASYNC_PG_BIN")


@pytest.fixture
def clean_mirror() -> Iterator[None]:
    """Empties the ERP's mirror tables and the consumer cursors before and after a test."""
    from dukasync.django.models import FeedCursor
    from tests.erpapp.models import MirroredChange, MirroredSale

    def wipe() -> None:
        for model in (MirroredChange, MirroredSale, FeedCursor):
            model.objects.all().delete()

    wipe()
    yield
    wipe()
