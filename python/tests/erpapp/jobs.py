"""The ERP's consumer job, as docs/erp-guide.md §3 writes it, for a Django-RQ worker."""

import os

from django.conf import settings

from dukasync import Client
from dukasync.django.feed import mirror_into
from tests.erpapp.sync import mirror, mirror_then_die


def mirror_sales(scope: str) -> None:
    """Mirrors `scope`'s feed until caught up; with DIE_AT_VERSION set in the worker, its process is killed there."""
    conf = settings.DUKASYNC
    handler = mirror_then_die if os.environ.get("DIE_AT_VERSION") else mirror
    with Client(conf["URL"], conf["TOKEN"]) as client:
        mirror_into(client, scope, "erp-rq", handler, limit=4)
