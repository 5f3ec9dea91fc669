"""``ecpds product expected|started|completed|reset``: set a product's generation status.

Rule kept here: the command only publishes the ``ProductStatusChanged`` that
``bus.products.publish_product_status`` builds (the one the REST API and OpenECPDS's
``ecpds -expected|-started|-completed|-reset`` go through), keyed by the product, with the
operator as ``requested_by``; a field that cannot be asked is refused (exit 2) unpublished.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import orjson
import typer

from bus import codec
from bus.events.products import ProductStatus
from bus.products import parse_at, product_key, publish_product_status
from bus.publisher import Publisher
from bus.topics import PRODUCTS
from cli.credentials import operator
from cli.terminal import actor, console, run, run_sync, settings

product_app = typer.Typer(
    no_args_is_help=True,
    help="Set a product's generation status (expected, started, completed, reset).",
)

Stream = Annotated[str, typer.Option("--stream", help="the product's stream (metadata stream)")]
Time = Annotated[str, typer.Option("--time", help="its base time (metadata time: 00, 12 ...)")]
Step = Annotated[str, typer.Option("--step", help="its step (metadata step)")]
Kind = Annotated[str, typer.Option("--type", help="its type (metadata type)")]
At = Annotated[
    str | None,
    typer.Option("--at", help="when the status holds from (ISO 8601, UTC by default; now)"),
]
Json = Annotated[bool, typer.Option("--json", help="print the published event as JSON")]
Topic = Annotated[str, typer.Option("--products-topic", hidden=True, help="products topic")]
SOURCE = "cli"


def _set(
    status: ProductStatus,
    product: tuple[str, str, str, str],
    at: str | None,
    as_json: bool,
    topic: str,
) -> None:
    """Publish ``status`` for the product (stream, time, step, type) named on the line."""
    key = run_sync(lambda: product_key(*product))
    when = run_sync(lambda: parse_at(at, datetime.now(UTC)))

    async def publish() -> None:
        found = settings()
        operator(found)  # refused (exit 2) before anything is published
        async with Publisher(found.kafka_bootstrap, client_id="ecpds-cli") as publisher:
            event = await publish_product_status(
                publisher, key, status, actor=actor(), source=SOURCE, at=when, topic=topic
            )
        if as_json:
            print(orjson.dumps(codec.to_json(event)).decode())
        else:
            console.print(
                f"{key.text()}: {status.value.lower()} at {event.at:%Y-%m-%d %H:%M:%S}Z"
                f" [dim]{event.envelope.event_id}[/dim]"
            )

    run(publish)


def _command(status: ProductStatus, doc: str) -> None:
    def command(
        stream: Stream,
        time: Time,
        step: Step,
        type_: Kind,
        at: At = None,
        as_json: Json = False,
        topic: Topic = PRODUCTS,
    ) -> None:
        _set(status, (stream, time, step, type_), at, as_json, topic)

    command.__doc__ = doc
    product_app.command(status.value.lower())(command)


_command(ProductStatus.EXPECTED, "Mark a product as expected (its generation is due).")
_command(ProductStatus.STARTED, "Mark a product's generation as started.")
_command(ProductStatus.COMPLETED, "Mark a product's generation as completed.")
_command(ProductStatus.RESET, "Clear a product's generation status.")
