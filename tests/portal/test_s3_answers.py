"""The S3 door's answer to a long CompleteMultipartUpload (``producers.portal.s3.keep_alive``),
read back by botocore's own XML parser: spaces while the work runs, then the result, or the
error document a stock client turns into the error."""

from __future__ import annotations

import asyncio

from botocore.parsers import RestXMLParser
from botocore.session import get_session

from producers.portal.s3 import keep_alive
from producers.portal.s3xml import S3Error

RESULT = (
    "<CompleteMultipartUploadResult><ETag>&quot;abc-2&quot;</ETag></CompleteMultipartUploadResult>"
)


async def _answer(work: asyncio.Future[None]) -> bytes:
    return b"".join([piece async for piece in keep_alive(work, lambda: RESULT, period=0.02)])


async def test_spaces_while_it_runs_then_the_result_botocore_parses() -> None:
    """Work that takes longer than the period answers the declaration, spaces, then the result,
    which botocore parses as CompleteMultipartUpload's output (the ETag)."""

    async def slow() -> None:
        await asyncio.sleep(0.1)

    body = await _answer(asyncio.ensure_future(slow()))
    assert body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n ')
    output = get_session().get_service_model("s3").operation_model("CompleteMultipartUpload")
    parsed = RestXMLParser().parse(
        {"body": body, "headers": {}, "status_code": 200}, output.output_shape
    )
    assert parsed["ETag"] == '"abc-2"'


async def test_a_failure_ends_with_its_error_document() -> None:
    """Work that fails answers its S3 error as an ``<Error>`` document after the spaces."""

    async def failing() -> None:
        await asyncio.sleep(0.05)
        raise S3Error("EntityTooSmall", "part 1 is under 5242880 bytes", 400)

    body = await _answer(asyncio.ensure_future(failing()))
    message = b"<Message>part 1 is under 5242880 bytes</Message>"
    assert body.rstrip().endswith(b"<Error><Code>EntityTooSmall</Code>" + message + b"</Error>")
