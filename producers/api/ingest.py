"""The ingest endpoints without a web framework: a put and a data file read, from plain
mappings of query and headers (by lower-case name) and a stream of body chunks, to an
``Answer`` (status, JSON bytes, headers) that any front sends as it likes.

Both fronts call these: the Starlette routes (``producers.api.app``) and the lean ASGI front
of the hot endpoint (``producers.api.fast``), so they answer the same, byte for byte.
Rules kept here: every refusal answers 4xx with ``{"status": "error", "field": ..., "reason":
..., "message": ...}`` and is an event (``DataFileRegistrationRefused``); a request without
valid credentials is answered 401, and a read-only (viewer) token's put 403, neither an event
(it is not a submission). The body is
streamed straight into the store: it is never held whole in memory. A registration that could
not be made durable in time (the broker away) is answered 503 with ``Retry-After``; putting the
same bytes again is safe: it is answered 200 with the registration the first put made (201 is
a new one), see ``producers.ingest.service``.

Upload size: a destination's ``max_file_size`` is enforced by the ingest service; a
destination without one is capped at ``ApiState.max_upload`` (``ECPDS_MAX_UPLOAD``), and a data
user whose ``properties.max_file_size`` is set is capped at it too. Over the cap the put is
refused 413 (``TOO_LARGE``) from its ``Content-Length`` before a byte is read, or as soon as
the streamed count passes it (the partial object removed, the registration closed failed).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from bus.config.source import ConfigSource
from bus.events.datafiles import RefusalReason
from bus.events.transfers import TransferQueued
from bus.signin import Banned
from producers.api import params
from producers.api.auth import Authenticator
from producers.ingest.core import Refused, Submission, upload_cap
from producers.ingest.index import TransferEntry
from producers.ingest.service import Failure, IngestService, Receipt
from projections.products import ProductReads

if TYPE_CHECKING:
    from producers.api.openecpds import ConfigWriter

STATUS: Mapping[RefusalReason, int] = {
    RefusalReason.INVALID: 400,
    RefusalReason.ALREADY_EXPIRED: 400,
    RefusalReason.NOT_PERMITTED: 403,
    RefusalReason.UNKNOWN_DESTINATION: 404,
    RefusalReason.DUPLICATE: 409,
    RefusalReason.TOO_LARGE: 413,
    RefusalReason.TOO_MANY_PENDING: 429,
}
DATAFILES_PATH = "/api/v1/datafiles"
_CHALLENGE = (("WWW-Authenticate", 'Bearer, Basic realm="ecpds"'),)
_NO_CREDENTIALS = "a Bearer token or data user credentials needed"
RETRY_AFTER_S = 2  # seconds a 503 asks the client to wait before putting the same file again


@dataclass(frozen=True, slots=True)
class ApiState:
    """What the endpoints need: the ingest service, the live configuration and the
    authenticator."""

    service: IngestService
    config: ConfigSource
    auth: Authenticator
    max_upload: int | None = 10 * 1024**3  # for a destination without its own max_file_size
    config_writer: ConfigWriter | None = None  # changes through /ecpds/v1 (None: refused 503)
    products: ProductReads | None = None  # the monitoring summary's reads (None: answers 501)


@dataclass(frozen=True, slots=True)
class Answer:
    """A JSON answer: status, encoded body and extra headers (the same for every front)."""

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


def answer_error(status: int, field: str, message: str, **extra: Any) -> Answer:
    """An error answer; a 401 carries the challenge, a 503 or an answer given a
    ``retry_after`` says ``Retry-After``."""
    body = {"status": "error", "field": field, "message": message, **extra}
    headers = _CHALLENGE if status == 401 else ()
    if status == 503 or "retry_after" in extra:
        headers = (("Retry-After", str(extra.get("retry_after", RETRY_AFTER_S))),)
    return Answer(status, orjson.dumps(body), headers)


def banned(refused: Banned) -> Answer:
    """429: too many failed sign-ins from this address or for this account."""
    return answer_error(
        429,
        "authorization",
        "too many failed sign-ins: try again later",
        retry_after=refused.retry_after,
    )


def refusal(r: Refused, data_file_id: str | None = None) -> Answer:
    extra = {"reason": r.reason.value}
    if data_file_id:
        extra["data_file_id"] = data_file_id
    return answer_error(STATUS.get(r.reason, 400), r.field, r.message, **extra)


def _transfer(t: TransferQueued | TransferEntry) -> dict[str, Any]:
    return {
        "transfer_id": t.transfer_id,
        "destination": t.destination,
        "status": t.status.value,
        "priority": t.priority,
        "queue_time": t.queue_time.isoformat(),
        "expiry_time": t.expiry_time.isoformat(),
        "alias_of": t.alias_of,
    }


async def put(
    state: ApiState,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    body: AsyncIterable[bytes],
    client: str | None = None,
) -> Answer:
    """``POST /api/v1/datafiles``, whatever serves it: ``headers`` by lower-case name,
    ``client`` the caller's address (for the sign-in defender)."""
    principal = await state.auth.principal(headers.get("authorization"), state.config.view, client)
    if isinstance(principal, Banned):
        return banned(principal)
    if principal is None:
        return answer_error(401, "authorization", _NO_CREDENTIALS)
    if not principal.can_act:
        # before the body is read: a read-only token never publishes
        return answer_error(403, "authorization", "a read-only (viewer) token cannot put")
    raw = params.options(query, headers)
    length = headers.get("content-length")
    size = int(length) if length and length.isdigit() else None
    parsed = params.submission(raw, size=size, user=principal.user, requested_by=principal.label)
    if isinstance(parsed, Refused):
        await state.service.refuse(raw.get("destination", ""), raw.get("target", ""), parsed)
        return refusal(parsed)
    cap = _upload_cap(state, parsed)
    if cap is not None and parsed.size is not None and parsed.size > cap[0]:
        over = _too_large(parsed.size, cap)
        await state.service.refuse(parsed.destination, parsed.target, over, parsed)
        return refusal(over)
    counted = _Capped(body, cap[0] if cap is not None else None)
    outcome = await state.service.submit(parsed, counted)
    if isinstance(outcome, Refused):
        return refusal(outcome)
    if isinstance(outcome, Failure) and cap is not None and counted.passed:
        over = _too_large(counted.size, cap)
        await state.service.refuse(
            parsed.destination, parsed.target, over, parsed, data_file_id=outcome.data_file_id
        )
        return refusal(over, outcome.data_file_id)
    if isinstance(outcome, Failure):
        return answer_error(
            503 if outcome.retriable else 500,
            "body" if outcome.stage == "receive" else "store",
            f"the file was not stored ({outcome.stage}): {outcome.message}",
            data_file_id=outcome.data_file_id,
        )
    assert isinstance(outcome, Receipt)
    sums = outcome.checksums
    return Answer(
        200 if outcome.repeated else 201,
        orjson.dumps(
            {
                "status": "ok",
                "data_file_id": outcome.data_file_id,
                "file_instance": outcome.file_instance,
                "size": outcome.size,
                "checksums": {"adler32": sums.adler32, "md5": sums.md5},
                "transfers": [_transfer(q) for q in outcome.transfers],
            }
        ),
    )


def _upload_cap(state: ApiState, s: Submission) -> tuple[int, str] | None:
    """The cap this API adds for ``s`` (``producers.ingest.core.upload_cap``)."""
    return upload_cap(state.config.view, s.destination, s.user, state.max_upload)


def _too_large(size: int, cap: tuple[int, str]) -> Refused:
    limit, whose = cap
    return Refused(RefusalReason.TOO_LARGE, "size", f"{size} bytes exceeds {whose} ({limit} bytes)")


class _Capped:
    """The body, counted as it streams and ended with an error once it passes ``cap`` (the
    service then removes the partial object and closes the registration failed)."""

    def __init__(self, body: AsyncIterable[bytes], cap: int | None) -> None:
        self._body = body
        self._cap = cap
        self.size = 0
        self.passed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._body:
            self.size += len(chunk)
            if self._cap is not None and self.size > self._cap:
                self.passed = True
                raise ValueError(f"the body passed {self._cap} bytes")
            yield chunk


async def datafile(
    state: ApiState, authorization: str | None, data_file_id: str, client: str | None = None
) -> Answer:
    """``GET /api/v1/datafiles/{id}``: the file and its transfers, to a caller that may see it
    (a data user sees only the files of its destinations; any other id is "not found")."""
    principal = await state.auth.principal(authorization, state.config.view, client)
    if isinstance(principal, Banned):
        return banned(principal)
    if principal is None:
        return answer_error(401, "authorization", _NO_CREDENTIALS)
    index = state.service.index
    entry = index.file(data_file_id)
    visible = entry is not None and (
        principal.user is None
        or principal.user in state.config.view.users_for(entry.registered.destination)
    )
    if entry is None or not visible:
        return answer_error(404, "data_file_id", f"no data file {data_file_id!r}")
    r, stored = entry.registered, entry.stored
    body = {
        "status": "ok",
        "data_file_id": data_file_id,
        "state": entry.state.value,
        "destination": r.destination,
        "target": r.target,
        "version": r.version,
        "file_instance": r.file_instance,
        "priority": r.priority,
        "registered_at": r.envelope.occurred_at.isoformat(),
        "expiry_time": r.expiry_time.isoformat(),
        "scheduled_time": r.scheduled_time.isoformat() if r.scheduled_time else None,
        "standby": r.standby,
        "requested_by": r.requested_by,
        "metadata": dict(r.metadata),
        "size": stored.size if stored else None,
        "checksums": (
            {"adler32": stored.checksums.adler32, "md5": stored.checksums.md5} if stored else None
        ),
        "store": stored.store if stored else None,
        "guid": stored.guid if stored else None,
        "failure": entry.failure,
        "transfers": [_transfer(t) for t in index.transfers_of(data_file_id)],
    }
    return Answer(200, orjson.dumps(body))


__all__ = ["DATAFILES_PATH", "Answer", "ApiState", "datafile", "put"]
