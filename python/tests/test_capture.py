"""Plain Django ORM saves of the ERP's own table reach a device pulling the feed over HTTP, and a real Dexie device
(the reference JS client) holds each state of the row: conftest.py installs the capture trigger on `erp_product`
with the real `dukasync capture install` (docs/backend-sql.md), and nothing on the Python side knows about
dukasync."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

from dukasync import Client
from tests.conftest import dexie_rows
from tests.erpapp.models import ErpProduct


def next_change_of(client: Client, cursor: str, key: str) -> tuple[dict[str, Any], str]:
    """Long-polls `products` until a change of `key` arrives (bounded); returns it and the cursor after it."""
    deadline = time.monotonic() + 30
    while True:
        assert time.monotonic() < deadline, f"no change of products/{key} reached the feed"
        page = client.changes("water", cursor, wait=5, collections=["products"])
        for change in page["changes"]:
            if change["key"] == key:
                return dict(change), page["cursor"]
        cursor = page["cursor"]


def test_orm_create_update_delete_reach_a_device(server_url: str, cashier_token: str) -> None:
    with Client(server_url, cashier_token) as device:
        cursor = device.changes("water", "0", collections=["products"], limit=1000)["cursor"]

        product = ErpProduct.objects.create(business="water", name="Mandazi", price=Decimal("20.5"))
        key = str(product.pk)
        created, cursor = next_change_of(device, cursor, key)
        assert created["op"] == "upsert"
        assert created["data"] == {"id": key, "name": "Mandazi", "price": "20.50", "active": True}
        assert dexie_rows(cashier_token, "water", "products", key) == {key: created["data"]}

        product.price = Decimal("25.00")
        product.save()
        updated, cursor = next_change_of(device, cursor, key)
        assert updated["data"]["price"] == "25.00" and updated["version"] > created["version"]
        assert dexie_rows(cashier_token, "water", "products", key)[key]["price"] == "25.00"

        product.delete()
        deleted, _ = next_change_of(device, cursor, key)
        assert deleted["op"] == "delete"
        assert dexie_rows(cashier_token, "water", "products", key) == {key: None}
