"""The consumer pattern of `dukasync.consumer`, ready-made for Django: the cursor is a `FeedCursor` row written
in the same `transaction.atomic()` block as the handler's saves, so a killed worker mirrors every change once.

    def mirror(scope: str, change: Change) -> None:      # called inside the page's transaction
        if change["collection"] == "sales" and change["op"] == "upsert":
            Sale.objects.update_or_create(scope=scope, key=change["key"], defaults={...})

    mirror_into(Client(url, token), "water", "erp-sales", mirror)

For a Django-RQ job, enqueue a function that calls `mirror_into` (it returns once caught up), or run
`manage.py dukasync_consume --scope water --handler myapp.sync.mirror --follow` as a worker of its own.
"""

from __future__ import annotations

from typing import Callable

from django.db import transaction

from dukasync.client import Change, Client, Page
from dukasync.consumer import consume
from dukasync.django.conf import database
from dukasync.django.models import FeedCursor

Handler = Callable[[str, Change], None]


class CursorMoved(Exception):
    """Another run of the same consumer stored a cursor since this run loaded its own: this run's page is
    dropped (its transaction rolls back) instead of being mirrored a second time."""


def load_cursor(name: str, scope: str, using: str | None = None) -> str | None:
    row = FeedCursor.objects.using(using or database()).filter(name=name, scope=scope).first()
    return row.cursor if row else None


def mirror_into(
    client: Client,
    scope: str,
    name: str,
    handle_change: Handler,
    *,
    collections: list[str] | None = None,
    limit: int | None = None,
    follow: bool = False,
    using: str | None = None,
    on_reset: Callable[[], None] | None = None,
) -> int:
    """Mirrors the feed of `scope` through `handle_change(scope, change)`; `name` names this consumer's cursor.

    Each page runs in one transaction: the handler's writes for every change of the page and the new cursor
    commit together, or not at all. The cursor row is locked and compared with the one the page was pulled
    from, so two runs of one consumer at once cannot both mirror a page: the second raises `CursorMoved` (or,
    for the very first page, an IntegrityError of the cursor's unique constraint). Returns the changes handled.
    """
    alias = using or database()
    pulled_from: list[str | None] = [None]

    def load() -> str | None:
        pulled_from[0] = load_cursor(name, scope, alias)
        return pulled_from[0]

    def handle_page(page: Page) -> None:
        with transaction.atomic(using=alias):
            row = FeedCursor.objects.using(alias).select_for_update().filter(name=name, scope=scope).first()
            if (row.cursor if row else None) != pulled_from[0]:
                raise CursorMoved(f"consumer {name!r} of {scope!r} moved on while this run pulled a page")
            for change in page["changes"]:
                handle_change(scope, change)
            if row is None:
                FeedCursor.objects.using(alias).create(name=name, scope=scope, cursor=page["cursor"])
            else:
                row.cursor = page["cursor"]
                row.save(using=alias, update_fields=["cursor", "updated_at"])

    return consume(
        client,
        scope,
        load,
        handle_page,
        collections=collections,
        limit=limit,
        follow=follow,
        on_reset=on_reset,
    )
