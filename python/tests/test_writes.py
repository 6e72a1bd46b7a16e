"""Django writes rows in its own transaction through `dukasync_api.put/patch/delete` (migration 0016,
docs/backend-sql.md): a committed write reaches the feed and a real Dexie device (the reference JS client), a
rolled-back one never does.

A rolled-back write is checked by absence, so the test first waits for a write committed *after* it: the applier
applies in commit order per scope, so once the later write is in the feed the rolled-back one would be too."""

from __future__ import annotations

import time
import uuid

import pytest
from django.db import transaction

from dukasync import Client
from dukasync.django.writes import RowWriteError, delete_row, patch_row, write_row
from tests.conftest import dexie_rows


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
            # Not before commit: the queued write is invisible to the applier until then.
            before_commit = client.changes("water", cursor, collections=["customers"], limit=1000)["changes"]
            assert committed not in [c["key"] for c in before_commit]
        seen, cursor = wait_for_key(client, cursor, committed)
        assert rolled_back not in seen
        assert dexie_rows(owner_token, "water", "customers", committed, rolled_back) == {
            committed: {"id": committed, "name": "Wambui", "credit_limit": "2000.00"},
            rolled_back: None,
        }
        with transaction.atomic():
            patch_row("water", "customers", committed, {"phone": "+254700000009"})
        with transaction.atomic():
            delete_row("water", "customers", committed)
        wait_for_key(client, cursor, committed)


def test_a_refused_write_names_its_sqlstate() -> None:
    with pytest.raises(RowWriteError) as refused, transaction.atomic():
        write_row("no-such-scope", "customers", "c-1", {"name": "x"})
    assert refused.value.sqlstate == "ZD001"
