"""dukasync for Python: an HTTP client (`dukasync.client`), a feed consumer (`dukasync.consumer`) and a Django
app (`dukasync.django`). The wire contract is protocol/README.md of the dukasync repository."""

from dukasync.client import Client, NotModified, Outbox, RowResult, RowWrite, Snapshot
from dukasync.errors import DukasyncError, ResetRequired

__all__ = ["Client", "DukasyncError", "NotModified", "Outbox", "ResetRequired", "RowResult", "RowWrite", "Snapshot"]
__version__ = "0.1.0"
