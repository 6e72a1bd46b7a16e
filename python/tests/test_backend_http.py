"""`Client.write_rows` against the real server (protocol §14.2): the backend's user and token made by the real CLI
as an operator would (docs/backend-http.md), writes that reach the feed, a resend answered from storage, the
`if_version` check, and refusals raised with their stable code and the index of the write at fault."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from decimal import Decimal

import pytest

from dukasync import Client, DukasyncError, RowResult, RowWrite

BACKEND = "erp-http@duka.test"


@pytest.fixture(scope="module")
def backend_token(dukasync_cli: Callable[..., str]) -> str:
    dukasync_cli("user-add", "--email", BACKEND, "--name", "ERP", "--scope", "water", "--role", "backend")
    return dukasync_cli("token", "issue", "--email", BACKEND, "--device", "erp-server").strip()


def key() -> str:
    return f"py-http-{uuid.uuid4().hex[:8]}"


def test_writes_reach_the_feed_and_a_resend_applies_nothing(
    server_url: str, owner_token: str, backend_token: str
) -> None:
    c1, c2 = key(), key()
    with Client(server_url, backend_token) as backend, Client(server_url, owner_token) as phone:
        writes = [
            RowWrite.put("customers", c1, {"name": "Achieng", "credit_limit": Decimal("2000.50")}, if_version=0),
            RowWrite.patch("customers", c1, {"phone": "+254700000001"}),
            RowWrite.put("customers", c2, {"name": "Otieno"}),
            RowWrite.delete("customers", c2),
        ]
        results = backend.write_rows("water", writes)
        assert [r.status for r in results] == ["applied"] * 4
        first = results[0].version
        assert first is not None
        # One transaction: consecutive versions.
        assert [r.version for r in results] == [first, first + 1, first + 2, None]
        assert [r.id for r in results] == [w.id for w in writes]
        assert not any(r.duplicate for r in results)

        mine = (c1, c2)
        page = phone.changes("water", str(first - 1), collections=["customers"])
        seen = [(c["key"], c["op"], c["version"]) for c in page["changes"] if c["key"] in mine]
        assert seen == [
            (c1, "upsert", first), (c1, "upsert", first + 1), (c2, "upsert", first + 2), (c2, "delete", first + 3)
        ]
        assert page["changes"][1]["data"] == {
            "id": c1, "name": "Achieng", "credit_limit": "2000.50", "phone": "+254700000001"
        }

        # The answer was lost, say: the same writes again answer from storage and write nothing.
        again = backend.write_rows("water", writes)
        assert again == [RowResult(r.id, r.status, r.version, duplicate=True) for r in results]
        later = phone.changes("water", str(first + 3), collections=["customers"])["changes"]
        assert [c for c in later if c["key"] in mine] == []


def test_if_version_is_checked_against_the_row(server_url: str, backend_token: str) -> None:
    c = key()
    with Client(server_url, backend_token) as backend:
        [created] = backend.write_rows("water", [RowWrite.put("customers", c, {"name": "v1"}, if_version=0)])
        assert created.applied and created.version is not None
        stale, fresh = backend.write_rows("water", [
            RowWrite.patch("customers", c, {"name": "stale"}, if_version=created.version - 1),
            RowWrite.patch("customers", c, {"name": "v2"}, if_version=created.version),
        ])
        assert (stale.status, stale.version) == ("version_mismatch", created.version)
        assert (fresh.status, fresh.version) == ("applied", created.version + 1)
        [missing] = backend.write_rows("water", [RowWrite.delete("customers", key())])
        assert (missing.status, missing.version) == ("not_found", None)


def test_refusals_raise_with_their_code_and_the_write_at_fault(
    server_url: str, backend_token: str, cashier_token: str
) -> None:
    c = key()
    with Client(server_url, backend_token) as backend:
        write = RowWrite.put("customers", c, {"name": "Wambui"})
        backend.write_rows("water", [write])

        with pytest.raises(DukasyncError) as mismatch:
            backend.write_rows("water", [RowWrite.put("customers", key(), {"name": "fine"}),
                                         RowWrite.put("customers", c, {"name": "other"}, id=write.id)])
        assert (mismatch.value.status, mismatch.value.code) == (422, "payload_mismatch")
        assert mismatch.value.details == {"index": 1}

        fine = key()
        with pytest.raises(DukasyncError) as bad:
            backend.write_rows("water", [RowWrite.put("customers", fine, {"name": "fine"}),
                                         RowWrite.put("sales", "s-1", {"total": "1.00"})])
        assert (bad.value.status, bad.value.code, bad.value.details) == (400, "server_only_collection", {"index": 1})
        assert not bad.value.retryable
        # Nothing of the refused batches was written: the fine write still creates its row.
        [created] = backend.write_rows("water", [RowWrite.put("customers", fine, {"name": "fine"}, if_version=0)])
        assert created.applied

        with pytest.raises(DukasyncError) as elsewhere:
            backend.write_rows("laundry", [RowWrite.delete("customers", c)])
        assert (elsewhere.value.status, elsewhere.value.code) == (404, "scope_not_found")

    with Client(server_url, cashier_token) as phone:
        with pytest.raises(DukasyncError) as forbidden:
            phone.write_rows("water", [RowWrite.delete("customers", c)])
        assert (forbidden.value.status, forbidden.value.code) == (403, "forbidden")
