"""A small typed client for the dukasync HTTP API (protocol §6-§12, and §14.2: the backend's row writes).

One `Client` per server and token. Every call is one HTTP request; errors raise `DukasyncError` (or
`ResetRequired` for 410) carrying the stable `code` and the server's request id. Nothing is retried here:
the caller decides (a 503/408 is safe to retry, protocol §10).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal, TypedDict, cast

import httpx

from dukasync.errors import DukasyncError, ResetRequired

JSON = dict[str, Any]


class Change(TypedDict, total=False):
    """One change of the feed (protocol §7.4). `data` is the row's full new state; absent for a delete."""

    version: int
    collection: str
    key: str
    op: Literal["upsert", "delete"]
    data: JSON


class Page(TypedDict):
    """A page of the feed (protocol §7.2). Store `cursor` in the same transaction as what you did with `changes`."""

    changes: list[Change]
    cursor: str
    has_more: bool
    head: int


class OpResult(TypedDict, total=False):
    """The answer to one operation (protocol §10): `status` is applied, conflict, rejected or duplicate."""

    seq: int
    id: str
    status: str
    versions: list[int]
    conflict_id: str
    code: str
    message: str
    original: str


class _PushAnswer(TypedDict):
    results: list[OpResult]
    last_seq: int


class PushResult(_PushAnswer, total=False):
    # Operations up to it are held beyond the primary's disk (protocol §10.3); absent from older servers.
    durable_seq: int


WriteType = Literal["put", "patch", "delete"]
WriteStatus = Literal["applied", "version_mismatch", "not_found"]


@dataclass(frozen=True)
class RowWrite:
    """One backend write of `POST /v1/scopes/{scope}/rows` (protocol §14.2); build it with `put`, `patch` or
    `delete`.

    `id` makes the write idempotent: resending a write with the same `id` answers its stored result and applies
    nothing, so keep the id with whatever you retry (the default, a fresh UUID, suits one attempt only).
    `if_version`: apply only if the row's version is this one (0: only if the row does not exist). `Decimal`
    values are sent as decimal strings; floats are refused by the server.
    """

    type: WriteType
    collection: str
    key: str
    data: JSON | None = None
    fields: JSON | None = None
    if_version: int | None = None
    id: uuid.UUID = field(default_factory=uuid.uuid4)

    @classmethod
    def put(
        cls, collection: str, key: str, data: JSON, *, if_version: int | None = None, id: uuid.UUID | str | None = None
    ) -> RowWrite:
        """Create or replace the whole row; `data["id"]` is set to `key`."""
        return cls("put", collection, key, data={**data, "id": key}, if_version=if_version, id=_write_id(id))

    @classmethod
    def patch(
        cls,
        collection: str,
        key: str,
        fields: JSON,
        *,
        if_version: int | None = None,
        id: uuid.UUID | str | None = None,
    ) -> RowWrite:
        """Set top-level fields of an existing row; a `None` value removes the field."""
        return cls("patch", collection, key, fields=fields, if_version=if_version, id=_write_id(id))

    @classmethod
    def delete(
        cls, collection: str, key: str, *, if_version: int | None = None, id: uuid.UUID | str | None = None
    ) -> RowWrite:
        return cls("delete", collection, key, if_version=if_version, id=_write_id(id))

    def to_json(self) -> JSON:
        """The write as the request body carries it."""
        body: JSON = {"id": str(self.id), "type": self.type, "collection": self.collection, "key": self.key}
        if self.data is not None:
            body["data"] = _decimals_as_strings(self.data)
        if self.fields is not None:
            body["fields"] = _decimals_as_strings(self.fields)
        if self.if_version is not None:
            body["if_version"] = self.if_version
        return body


@dataclass(frozen=True)
class RowResult:
    """What became of one `RowWrite` (protocol §14.2), in request order.

    `status`: `applied` (`version` is the row's version now, `None` after a delete), `version_mismatch` (the
    write's `if_version` was not the row's version; `version` is the current one, `None` if no row; nothing
    done) or `not_found` (a patch or delete of a missing row; nothing done). `duplicate`: this id was answered
    before and this is that stored answer; nothing was applied now.
    """

    id: uuid.UUID
    status: WriteStatus
    version: int | None
    duplicate: bool

    @property
    def applied(self) -> bool:
        return self.status == "applied"


def _write_id(id: uuid.UUID | str | None) -> uuid.UUID:
    return uuid.uuid4() if id is None else uuid.UUID(str(id))


def _decimals_as_strings(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {k: _decimals_as_strings(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_decimals_as_strings(v) for v in value]
    return value


@dataclass(frozen=True)
class Snapshot:
    """A reference dataset (protocol §12) and the ETag to revalidate it with."""

    etag: str
    body: JSON

    @property
    def rows(self) -> list[JSON]:
        return cast(list[JSON], self.body["rows"])


@dataclass(frozen=True)
class NotModified:
    """304: the snapshot whose ETag was sent is still current."""

    etag: str


class Client:
    """The HTTP API with one bearer token (a device token or a JWT, protocol §3).

    `wait` of a long-poll is added to `timeout` for that request, as protocol §7.5 asks.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._timeout = timeout
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            timeout=timeout,
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- requests ---------------------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        json: JSON | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        response = self._http.request(
            method, path, params=params, json=json, headers=headers, timeout=timeout or self._timeout
        )
        if response.status_code >= 400:
            raise _error(response)
        return response

    def scopes(self) -> list[JSON]:
        """`GET /v1/scopes`: the scopes this token sees, with role and head."""
        return cast(list[JSON], self._request("GET", "/v1/scopes").json()["scopes"])

    def collections(self) -> list[JSON]:
        """`GET /v1/collections`: the declared collections (protocol §9)."""
        return cast(list[JSON], self._request("GET", "/v1/collections").json()["collections"])

    def changes(
        self,
        scope: str,
        since: str = "0",
        *,
        limit: int | None = None,
        wait: int = 0,
        collections: list[str] | None = None,
    ) -> Page:
        """`GET /v1/scopes/{scope}/changes` (protocol §7): one page after cursor `since` (opaque; "0" = start).

        `wait` > 0 long-polls up to that many seconds when nothing is newer. Raises `ResetRequired` on 410.
        """
        params = {"since": since, "wait": str(wait)}
        if limit is not None:
            params["limit"] = str(limit)
        if collections:
            params["collections"] = ",".join(collections)
        response = self._request(
            "GET", f"/v1/scopes/{scope}/changes", params=params, timeout=self._timeout + wait
        )
        return cast(Page, response.json())

    def push(self, scope: str, client_id: str | uuid.UUID, ops: list[JSON]) -> PushResult:
        """`POST /v1/scopes/{scope}/ops` (protocol §10): a run of one outbox, consecutive `seq`s.

        Resending the same operations (after a timeout, a 503) is harmless: applied ones answer `duplicate`.
        """
        body = {"client_id": str(client_id), "ops": ops}
        return cast(PushResult, self._request("POST", f"/v1/scopes/{scope}/ops", json=body).json())

    def write_rows(self, scope: str, writes: list[RowWrite]) -> list[RowResult]:
        """`POST /v1/scopes/{scope}/rows` (protocol §14.2): the backend's writes, applied in order in one
        transaction; needs a token of a user whose role in `scope` is `backend`. One result per write, in order.

        A refused batch raises `DukasyncError` and applies nothing: 400 with `code` and `details["index"]` (the
        write at fault), 422 `payload_mismatch` (an id reused with another payload), 413 `batch_too_large`, 403
        (not the backend role), 404 `scope_not_found`. After a timeout or a 503 (`retryable`), resend the same
        writes (same ids): each applies once.
        """
        body = {"writes": [write.to_json() for write in writes]}
        answer = self._request("POST", f"/v1/scopes/{scope}/rows", json=body).json()
        return [
            RowResult(
                id=uuid.UUID(result["id"]),
                status=cast(WriteStatus, result["status"]),
                version=result.get("version"),
                duplicate=bool(result.get("duplicate", False)),
            )
            for result in answer["results"]
        ]

    def reference(self, scope: str, dataset: str, etag: str | None = None) -> Snapshot | NotModified:
        """`GET /v1/scopes/{scope}/reference/{dataset}` (protocol §12), revalidated with `etag` if given."""
        headers = {"If-None-Match": etag} if etag else None
        response = self._http.get(f"/v1/scopes/{scope}/reference/{dataset}", headers=headers)
        if response.status_code == 304:
            return NotModified(response.headers["etag"])
        if response.status_code >= 400:
            raise _error(response)
        return Snapshot(etag=response.headers["etag"], body=response.json())


@dataclass
class Outbox:
    """Numbers operations for one `client_id` in one scope (protocol §10): seq 1, 2, 3, ... with no gaps, an id
    per operation that stays the same across resends. Operations leave `pending` once the server's `last_seq`
    covers them, and are forgotten only once a `durable_seq` does (a standby holds them, §10.3); until then
    they wait in `unconfirmed`, and go back to `pending` if the server turns out to have lost them (restored from
    its WAL archive).

    This one lives in memory: a process that must survive a crash stores `client_id`, `next_seq`, `pending` and
    `unconfirmed` in its database, in the transaction that creates the operation.
    """

    scope: str
    client_id: uuid.UUID = field(default_factory=uuid.uuid4)
    next_seq: int = 1
    pending: list[JSON] = field(default_factory=list)
    unconfirmed: list[JSON] = field(default_factory=list)

    def _add(self, op: JSON) -> JSON:
        op = {"seq": self.next_seq, "id": str(uuid.uuid4()), **op}
        self.next_seq += 1
        self.pending.append(op)
        return op

    def put(self, collection: str, key: str, data: JSON) -> JSON:
        return self._add({"type": "put", "collection": collection, "key": key, "data": {**data, "id": key}})

    def update(self, collection: str, key: str, mods: JSON, base_version: int | None = None) -> JSON:
        op: JSON = {"type": "update", "collection": collection, "key": key, "mods": mods}
        if base_version is not None:
            op["base_version"] = base_version
        return self._add(op)

    def delete(self, collection: str, key: str) -> JSON:
        return self._add({"type": "delete", "collection": collection, "key": key})

    def command(self, command: str, key: str, args: JSON) -> JSON:
        """A named command (protocol §10.1); every decimal in `args` is a string."""
        return self._add({"type": "command", "command": command, "key": key, "args": args})

    def send(self, client: Client) -> PushResult:
        """Pushes what is pending (an empty push asks whether `unconfirmed` is durable yet). Acknowledged
        operations move to `unconfirmed`, durable ones are dropped, and unconfirmed ones above the answer's
        `last_seq`, or from a 409 `sequence_gap`'s `expected_seq` on, are queued again: the server lost them."""
        try:
            result = client.push(self.scope, self.client_id, self.pending)
        except DukasyncError as error:
            expected = (error.details or {}).get("expected_seq")
            if error.code != "sequence_gap" or not isinstance(expected, int) or not self._requeue_from(expected):
                raise
            result = client.push(self.scope, self.client_id, self.pending)
        last = result["last_seq"]
        durable = result.get("durable_seq", last)
        acknowledged = [op for op in self.pending if op["seq"] <= last]
        kept = [op for op in self.unconfirmed + acknowledged if op["seq"] > durable]
        forgotten = [op for op in kept if op["seq"] > last]
        self.unconfirmed = [op for op in kept if op["seq"] <= last]
        self.pending = sorted(forgotten + [op for op in self.pending if op["seq"] > last], key=lambda op: op["seq"])
        return result

    def _requeue_from(self, expected: int) -> bool:
        kept = [op for op in self.unconfirmed if op["seq"] >= expected]
        upto = self.pending[0]["seq"] if self.pending else expected + len(kept)
        if not kept or [op["seq"] for op in kept] != list(range(expected, upto)):
            return False
        self.unconfirmed = []  # those below `expected` are in the restored server's history
        self.pending = kept + self.pending
        return True


def _error(response: httpx.Response) -> DukasyncError:
    request_id = response.headers.get("x-request-id")
    try:
        body = response.json()["error"]
        code, message, details = str(body["code"]), str(body.get("message", "")), body.get("details")
    except (ValueError, KeyError, TypeError):
        # Not our error shape (a proxy in between): keep the status, name the code after it.
        code, message, details = f"http_{response.status_code}", response.text[:200], None
    kind = ResetRequired if response.status_code == 410 else DukasyncError
    return kind(response.status_code, code, message, details, request_id)
