"""Writing synced rows from Django inside Django's own transaction.

`write_row`, `patch_row` and `delete_row` call the SQL functions `dukasync_api.put/patch/delete` (contract v1 of
the `dukasync_api` schema, docs/backend-sql.md) on Django's connection. They therefore join the current
transaction: inside `transaction.atomic()`, the write reaches devices if and only if the block commits, together
with your own model saves. Outside a transaction (autocommit) each call commits on its own.

    with transaction.atomic():
        product.save()
        write_row("water", "products", product.code, {"name": product.name, "price": str(product.price)})

Money and quantities go as decimal strings (`str(Decimal)`): JSON numbers must be integers (protocol §10).
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from django.db import Error as DatabaseError
from django.db import connections

from dukasync.django.conf import database


class RowWriteError(Exception):
    """The database refused the write (SQLSTATE class `ZD`, docs/backend-sql.md): unknown scope (ZD001), a
    collection the backend may not write (ZD002), invalid data (ZD003), an invalid key (ZD004). The current
    transaction is aborted: let it roll back."""

    def __init__(self, sqlstate: str, message: str) -> None:
        super().__init__(f"{sqlstate}: {message}")
        self.sqlstate = sqlstate
        self.message = message


def _default(value: object) -> str:
    # Decimals keep their exact digits as strings; floats are refused by the server, so never produced here.
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON: convert it to a string or an integer")


def _call(function: str, *args: str, using: str | None) -> int:
    connection = connections[using or database()]
    # Typed placeholders: the function is found by its argument types, and JSON travels as text cast to jsonb.
    placeholders = "%s::text, %s::text, %s::text" + (", %s::jsonb" if len(args) == 4 else "")
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT dukasync_api.{function}({placeholders})", list(args))
            row = cursor.fetchone()
    except DatabaseError as error:
        cause = error.__cause__
        sqlstate = getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)
        if isinstance(sqlstate, str) and sqlstate.startswith("ZD"):
            # The primary message only: psycopg's str() appends the PL/pgSQL context lines.
            primary = getattr(getattr(cause, "diag", None), "message_primary", None)
            raise RowWriteError(sqlstate, str(primary or cause).strip()) from error
        raise
    return int(row[0]) if row and row[0] is not None else 0


def write_row(
    scope: str, collection: str, key: str, data: dict[str, Any], *, using: str | None = None
) -> int:
    """Replaces the row `key` of `collection` in `scope` with `data` (its `id` is set to `key`).

    Returns the id of the queued write. The row reaches the feed once the transaction commits."""
    row = {**data, "id": key}
    return _call("put", scope, collection, key, json.dumps(row, default=_default), using=using)


def patch_row(
    scope: str, collection: str, key: str, fields: dict[str, Any], *, using: str | None = None
) -> int:
    """Sets the given top-level `fields` of an existing row; `None` removes a field."""
    return _call("patch", scope, collection, key, json.dumps(fields, default=_default), using=using)


def delete_row(scope: str, collection: str, key: str, *, using: str | None = None) -> int:
    """Deletes the row (a tombstone in the feed); deleting a missing row changes nothing."""
    return _call("delete", scope, collection, key, using=using)
