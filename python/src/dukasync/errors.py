"""Errors of the dukasync API as exceptions (protocol §4): every 4xx/5xx body is
`{"error": {"code", "message", "details"?}}`; the stable part is `code`, the rest is for people."""

from __future__ import annotations

from typing import Any


class DukasyncError(Exception):
    """An error answer of the server. Branch on `code` (stable, protocol §4), never on `message`.

    `request_id` is the server's `x-request-id`: quote it when reporting a problem, it finds the server's log.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: dict[str, Any] | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message} (request id {request_id or '-'})")
        self.status = status
        self.code = code
        self.message = message
        self.details: dict[str, Any] = details or {}
        self.request_id = request_id

    @property
    def retryable(self) -> bool:
        """503 `unavailable`/`overloaded` and 408 `timeout`: nothing was applied, the same request may be retried."""
        return self.status in (408, 503)


class ResetRequired(DukasyncError):
    """410 `reset_required` (protocol §7.6): the cursor cannot be honoured; drop the mirrored data of the scope
    and pull again from cursor "0". `details["reason"]` says why (`ahead_of_head`, `expired`, `unknown_history`)."""
