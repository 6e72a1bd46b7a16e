"""Handlers for the consumer, as an ERP would write them: called inside the page's transaction."""

import os
import signal
from decimal import Decimal

from dukasync.client import Change
from tests.erpapp.models import MirroredChange, MirroredSale


def mirror(scope: str, change: Change) -> None:
    MirroredChange.objects.create(
        scope=scope, version=change["version"], collection=change["collection"], key=change["key"]
    )
    if change["collection"] == "sales" and change["op"] == "upsert":
        data = change["data"]
        MirroredSale.objects.update_or_create(
            scope=scope, key=change["key"], defaults={"total": Decimal(data["total"]), "status": data["status"]}
        )


def mirror_then_die(scope: str, change: Change) -> None:
    """Mirrors, and kills its own process (SIGKILL, no cleanup) on the version named by DIE_AT_VERSION: a worker
    killed mid-page, with part of the page written in the open transaction."""
    mirror(scope, change)
    if change["version"] == int(os.environ["DIE_AT_VERSION"]):
        os.kill(os.getpid(), signal.SIGKILL)
