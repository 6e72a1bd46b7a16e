"""The client against the real server: pull pages with the cursor, long-poll, push with client_id/seq,
reference snapshots with ETag revalidation, errors with their stable code and request id."""

from __future__ import annotations

import threading

import pytest

from dukasync import Client, DukasyncError, NotModified, Outbox, ResetRequired, Snapshot


def test_pull_pages_follow_the_cursor_to_the_head(server_url: str, owner_token: str) -> None:
    with Client(server_url, owner_token) as client:
        seen, cursor, pages = [], "0", 0
        while True:
            page = client.changes("water", cursor, limit=7)
            seen += [c["version"] for c in page["changes"]]
            cursor, pages = page["cursor"], pages + 1
            if not page["has_more"]:
                break
        assert pages > 1
        assert seen == list(range(1, page["head"] + 1))  # every version once, in order


def test_push_applies_once_and_a_resend_is_a_duplicate(server_url: str, cashier_token: str) -> None:
    with Client(server_url, cashier_token) as client:
        outbox = Outbox("water")
        outbox.put("customers", "py-cust-1", {"name": "Achieng"})
        sent = list(outbox.pending)
        first = outbox.send(client)
        assert first["last_seq"] == 1 and first["results"][0]["status"] == "applied"
        assert outbox.pending == []
        again = client.push("water", outbox.client_id, sent)
        assert again["results"][0]["status"] == "duplicate"


def test_a_long_poll_wakes_on_a_push(server_url: str, owner_token: str, cashier_token: str) -> None:
    with Client(server_url, owner_token) as reader, Client(server_url, cashier_token) as writer:
        head = reader.changes("water", "0", limit=1)["head"]
        cursor = reader.changes("water", str(head))["cursor"]
        got: list[dict[str, object]] = []
        poll = threading.Thread(
            target=lambda: got.append(dict(reader.changes("water", cursor, wait=20))), daemon=True
        )
        poll.start()
        outbox = Outbox("water")
        outbox.put("customers", "py-cust-poll", {"name": "Otieno"})
        outbox.send(writer)
        poll.join(timeout=25)
        assert got, "the long-poll did not answer"
        keys = [c["key"] for c in got[0]["changes"]]  # type: ignore[union-attr]
        assert "py-cust-poll" in keys


def test_reference_snapshot_revalidates_with_its_etag(server_url: str, owner_token: str) -> None:
    with Client(server_url, owner_token) as client:
        snapshot = client.reference("water", "products")
        assert isinstance(snapshot, Snapshot)
        assert {row["id"] for row in snapshot.rows} >= {"w-500ml", "w-5l"}
        again = client.reference("water", "products", etag=snapshot.etag)
        assert isinstance(again, NotModified) and again.etag == snapshot.etag


def test_errors_carry_the_stable_code_and_the_request_id(server_url: str, owner_token: str) -> None:
    with Client(server_url, owner_token) as client:
        with pytest.raises(DukasyncError) as missing:
            client.changes("no-such-scope")
        assert (missing.value.status, missing.value.code) == (404, "scope_not_found")
        assert missing.value.request_id
        with pytest.raises(ResetRequired) as reset:
            client.changes("water", "999999")
        assert reset.value.code == "reset_required" and reset.value.details["reason"] == "ahead_of_head"
    with Client(server_url, "dks_" + "0" * 64) as stranger:
        with pytest.raises(DukasyncError) as unauthorized:
            stranger.scopes()
        assert unauthorized.value.code == "unauthorized"


def test_an_operation_is_kept_until_durable_and_resent_when_the_server_forgot_it(
    server_url: str, cashier_token: str
) -> None:
    """The server of these tests has no standby, so every answer confirms what it acknowledges (protocol §10.3);
    a second outbox with the same client_id and sequences that the server never saw stands for a server restored
    without them: the kept operations go back to `pending` and are applied once."""
    with Client(server_url, cashier_token) as client:
        outbox = Outbox("water")
        outbox.put("customers", "py-durable-1", {"name": "Njeri"})
        answer = outbox.send(client)
        assert answer["durable_seq"] == answer["last_seq"] == 1
        assert outbox.pending == [] and outbox.unconfirmed == []

        # What a device holds after the server acknowledged 1..2 without a standby flushing them, when the server
        # comes back from a restore that ends before them: it knows nothing of this client_id.
        restored = Outbox("water")
        restored.put("customers", "py-durable-2", {"name": "Wambui"})
        restored.put("customers", "py-durable-3", {"name": "Kamau"})
        restored.unconfirmed, restored.pending = restored.pending[:1], restored.pending[1:]
        answer = restored.send(client)
        assert answer["last_seq"] == 2, "the server expected 1: sequence_gap, then both were sent again"
        assert [r["status"] for r in answer["results"]] == ["applied", "applied"]
        assert restored.pending == [] and restored.unconfirmed == []
