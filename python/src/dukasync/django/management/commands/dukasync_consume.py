"""`manage.py dukasync_consume --scope water --handler myapp.sync.mirror [--name erp] [--follow]`

Mirrors a scope's feed into Django models through `handler(scope, change)` (a dotted path), exactly once: see
dukasync.django.feed. Without --follow it returns once caught up (a cron job or an RQ job); with it, it
long-polls for ever (a worker). The server and token come from settings.DUKASYNC["URL"] and ["TOKEN"].
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils.module_loading import import_string

from dukasync.client import Client
from dukasync.django.conf import required
from dukasync.django.feed import mirror_into


class Command(BaseCommand):
    help = "Mirror a scope's change feed into Django models, exactly once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--scope", required=True)
        parser.add_argument("--handler", required=True, help="dotted path of handler(scope, change)")
        parser.add_argument("--name", default="default", help="the consumer's name (one cursor per name)")
        parser.add_argument("--collections", default="", help="comma-separated; default all")
        parser.add_argument("--limit", type=int, default=None, help="changes per page")
        parser.add_argument("--follow", action="store_true", help="keep long-polling")

    def handle(self, *args: Any, **options: Any) -> None:
        handler = import_string(options["handler"])
        collections = [c for c in options["collections"].split(",") if c.strip()] or None
        with Client(required("URL"), required("TOKEN")) as client:
            handled = mirror_into(
                client,
                options["scope"],
                options["name"],
                handler,
                collections=collections,
                limit=options["limit"],
                follow=options["follow"],
            )
        self.stdout.write(f"mirrored {handled} changes of {options['scope']}")
