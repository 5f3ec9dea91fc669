"""Product status requests: the one builder and publisher that the ``ecpds product`` command,
the REST API (``POST /api/v1/products/{status}``) and OpenECPDS's ``ecpds -expected|-started|
-completed|-reset`` all go through.

Rules kept here: a status change is a ``ProductStatusChanged`` on ``ecpds.products`` keyed by
the product (``stream/time/step/type``), so the changes of one product stay in order. Building
it is pure (``at`` defaults to ``now``, passed in); a field that cannot make a product key
(empty, a ``/`` in it, too long) is refused with ``bus.requests.Invalid`` naming the field,
before anything is published.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Protocol

from bus.events import envelope
from bus.events.products import ProductStatus, ProductStatusChanged
from bus.requests import MAX_NAME, Invalid
from bus.timeliness import ProductKey
from bus.topics import PRODUCTS

MAX_FIELD = 255  # OpenECPDS's metadata value limit


class Publishes(Protocol):
    """What publishes an event (``bus.publisher.Publisher``, the monitor's ``Actions``)."""

    async def publish(self, topic: str, key: str, event: Any) -> object: ...


def product_key(stream: object, time: object, step: object, type_: object) -> ProductKey:
    """The product named by four fields, each a non-empty text without ``/``."""
    values: list[str] = []
    for name, value in (("stream", stream), ("time", time), ("step", step), ("type", type_)):
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or not value.strip():
            raise Invalid(f"{name} must be a text", name)
        if "/" in value or len(value) > MAX_FIELD:
            raise Invalid(f"{name} must be at most {MAX_FIELD} characters, without '/'", name)
        values.append(value.strip())
    return ProductKey(*values)


def parse_status(value: object) -> ProductStatus:
    """A status from its name, any case (``expected``, ``started``, ``completed``, ``reset``)."""
    if isinstance(value, str):
        try:
            return ProductStatus(value.strip().upper())
        except ValueError:
            pass
    names = ", ".join(s.value.lower() for s in ProductStatus)
    raise Invalid(f"status must be one of {names}", "status")


def parse_at(value: object, now: datetime) -> datetime:
    """``--at``: an ISO 8601 time (UTC when it names no zone), OpenECPDS's ``yyyyMMddHHmmss``,
    or ``now`` when absent."""
    if value is None or value == "":
        return now
    if isinstance(value, datetime):
        found = value
    elif isinstance(value, str):
        text = value.strip()
        try:
            if text.isdigit() and len(text) == 14:
                found = datetime.strptime(text, "%Y%m%d%H%M%S")
            else:
                found = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise Invalid("at must be a time like 2026-12-07T06:00Z", "at") from None
    else:
        raise Invalid("at must be a time like 2026-12-07T06:00Z", "at")
    return found if found.tzinfo is not None else found.replace(tzinfo=UTC)


def product_status_event(
    product: ProductKey,
    status: ProductStatus,
    *,
    actor: str,
    source: str,
    at: datetime,
) -> ProductStatusChanged:
    """The event of one status change (pure)."""
    if not isinstance(actor, str) or not actor or len(actor) > MAX_NAME:
        raise Invalid("actor must be a text", "actor")
    return ProductStatusChanged(
        envelope=envelope(source, product.text()),
        stream=product.stream,
        time=product.time,
        step=product.step,
        type=product.type,
        status=status,
        at=at.astimezone(UTC),
        requested_by=actor,
    )


async def publish_product_status(
    publisher: Publishes,
    product: ProductKey,
    status: ProductStatus,
    *,
    actor: str,
    source: str,
    at: datetime | None = None,
    topic: str = PRODUCTS,
) -> ProductStatusChanged:
    """Publish a product's status change (``at`` default: now) on ``topic``, keyed by the
    product, once the broker acknowledged it; the event."""
    event = product_status_event(
        product, status, actor=actor, source=source, at=at or datetime.now(UTC)
    )
    await publisher.publish(topic, product.text(), event)
    return event
