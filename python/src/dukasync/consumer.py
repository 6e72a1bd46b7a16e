"""Mirroring the change feed into your own database, exactly once (protocol §7).

The pattern: **the cursor lives in your database, and is written in the same transaction as what you mirrored
from the page it closes.** A crash (a killed RQ worker, a deploy) then leaves both or neither: a rerun loads
the cursor of the last committed page and pulls the next one, so every change is handled once. A page repeated
after a crash that struck before the commit is repeated whole, and nothing of it was kept.

    def load_cursor() -> str | None:                     # what the last committed page stored
        row = FeedCursor.objects.filter(name="sales", scope=scope).first()
        return row.cursor if row else None

    def handle_page(page: Page) -> None:                 # one transaction: the changes and the cursor
        with transaction.atomic():
            for change in page["changes"]:
                mirror(change)
            FeedCursor.objects.update_or_create(name="sales", scope=scope, defaults={"cursor": page["cursor"]})

    consume(client, "water", load_cursor, handle_page)

`dukasync.django.feed.mirror_into` is that pattern ready-made for Django; `manage.py dukasync_consume` runs it.
Never keep the cursor in memory across pages, in Redis or in a file: only where the mirrored rows are.
"""

from __future__ import annotations

from typing import Callable

from dukasync.client import Client, Page
from dukasync.errors import ResetRequired


def consume(
    client: Client,
    scope: str,
    load_cursor: Callable[[], str | None],
    handle_page_and_store_cursor: Callable[[Page], None],
    *,
    collections: list[str] | None = None,
    limit: int | None = None,
    follow: bool = False,
    wait: int = 25,
    on_reset: Callable[[], None] | None = None,
) -> int:
    """Pulls pages of `scope` from the stored cursor until caught up and returns how many changes were handled.

    `load_cursor` is called before every page (so a cursor another run stored is honoured); `None` means "0".
    `handle_page_and_store_cursor(page)` must apply the page's changes and store `page["cursor"]` in **one**
    transaction; if it raises, nothing of the page may be kept, and the exception ends this run.
    With `follow`, it keeps long-polling (`wait` seconds) instead of returning, as a worker does.
    On 410 `reset_required`, `on_reset()` must drop the mirrored data and the cursor in one transaction; without
    it the `ResetRequired` is raised.
    """
    handled = 0
    caught_up = False
    while not (caught_up and not follow):
        since = load_cursor() or "0"
        try:
            page = client.changes(
                scope, since, limit=limit, wait=wait if caught_up else 0, collections=collections
            )
        except ResetRequired:
            if on_reset is None:
                raise
            on_reset()
            caught_up = False
            continue
        handle_page_and_store_cursor(page)
        handled += len(page["changes"])
        caught_up = not page["has_more"]
    return handled
