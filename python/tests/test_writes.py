"""Django writes rows in its own transaction through `dukasync_api.put/patch/delete` (migration 0016, written in
parallel on the inbox branch): a committed write reaches the feed, a rolled-back one never does.

Until migration 0016 is in this checkout these tests are expected to fail (strict xfail: one that passes early is
an error); once it is merged they run plainly. They never skip."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from django.db import transaction

from dukasync import Client
from dukasync.django.writes import RowWriteError, delete_row, patch_row, write_row

ROOT = Path(__file__).resolve().parents[2]
INBOX_MERGED = any((ROOT / "migrations").glob("20261125000016_*.sql"))
pytestmark = pytest.mark.xfail(not INBOX_MERGED, reason="needs migration 0016 (dukasync_api)", strict=True)


def wait_for_key(client: Client, cursor: str, key: str) -> tuple[list[str], str]:
    """Long-polls the feed until a change of `key` arrives (bounded); returns every key seen on the way."""
    seen: list[str] = []
    deadline = time.monotonic() + 30
    while key not in seen:
        assert time.monotonic() < deadline, f"{key} never reached the feed; saw {seen}"
        page = client.changes("water", cursor, wait=5, collections=["customers"])
        seen += [c["key"] for c in page["changes"]]
        cursor = page["cursor"]
    return seen, cursor


def test_a_committed_write_reaches_the_feed_and_a_rolled_back_one_never(server_url: str, owner_token: str) -> None:
    committed, rolled_back = f"py-c-{uuid.uuid4().hex[:6]}", f"py-r-{uuid.uuid4().hex[:6]}"
    with Client(server_url, owner_token) as client:
        cursor = client.changes("water", "0", collections=["customers"], limit=1000)["cursor"]
        with pytest.raises(RuntimeError):
            with transaction.atomic():
                write_row("water", "customers", rolled_back, {"name": "Never"})
                raise RuntimeError("the ERP's save failed")
        with transaction.atomic():
            write_row("water", "customers", committed, {"name": "Wambui", "credit_limit": "2000.00"})
        seen, cursor = wait_for_key(client, cursor, committed)
        assert rolled_back not in seen
        with transaction.atomic():
            patch_row("water", "customers", committed, {"phone": "+254700000009"})
        with transaction.atomic():
            delete_row("water", "customers", committed)
        wait_for_key(client, cursor, committed)


def test_a_refused_write_names_its_sqlstate() -> None:
    with pytest.raises(RowWriteError) as refused, transaction.atomic():
        write_row("no-such-scope", "customers", "c-1", {"name": "x"})
    assert refused.value.sqlstate == "ZD001"
