"""Django reads a device's sale through the read views (docs/backend-read.md): an unmanaged model and raw SQL."""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.db import connection

from dukasync import Client, Outbox
from tests.erpapp.models import ReadSale


def test_django_reads_a_devices_sale_through_the_views(server_url: str, cashier_token: str) -> None:
    key = f"sale-view-{uuid.uuid4().hex[:8]}"
    with Client(server_url, cashier_token) as till:
        outbox = Outbox("water")
        outbox.command(
            "record_sale",
            key,
            {
                "sold_at": "2026-11-24T18:05:00+03:00",
                "lines": [
                    {"product_id": "w-500ml", "quantity": "1", "unit_price": "480.00", "discount": "30.00"},
                    {"product_id": "w-refill-20l", "quantity": "3", "unit_price": "100.00"},
                ],
                "payments": [{"method": "mpesa", "amount": "750.00", "reference": "QX12AB"}],
            },
        )
        outbox.send(till)

    sale = ReadSale.objects.get(scope="water", id=key)
    assert (sale.status, sale.total) == ("posted", Decimal("750.00"))
    assert sale.sold_at.isoformat() == "2026-11-24T15:05:00+00:00"

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT product_id, quantity, amount FROM dukasync_read.sale_lines"
            " WHERE scope = %s AND sale_id = %s ORDER BY line_no",
            ["water", key],
        )
        assert cursor.fetchall() == [
            ("w-500ml", Decimal("1"), Decimal("450.00")),
            ("w-refill-20l", Decimal("3"), Decimal("300.00")),
        ]
        cursor.execute(
            "SELECT account, debit, credit FROM dukasync_read.journal_lines"
            " WHERE scope = %s AND source_key = %s ORDER BY account",
            ["water", key],
        )
        assert cursor.fetchall() == [
            ("1010", Decimal("750.00"), Decimal("0.00")),
            ("4000", Decimal("0.00"), Decimal("750.00")),
        ]
