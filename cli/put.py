"""``ecpds put``: register a data file through the ingest API, streaming its bytes.

Reads FILE (or stdin when no FILE is given) in 1 MiB chunks and streams them to
``POST /api/v1/datafiles``; a progress bar shows on stderr for files of 4 MiB or more. On
success it prints on stdout the data file id and the id of every transfer it queued, one per
line (``data-file <id>``, ``transfer <id> <destination> <status>``: the ids the ``transfer``
verbs take), or with ``--json`` the API's answer as one JSON object; a refusal prints the option
concerned and the reason on stderr and exits 2; any other failure exits 1.

Credentials: ``--token`` / ``ECPDS_API_TOKEN`` (an API token, see the README), or ``--user`` and
``--password`` / ``ECPDS_USER`` and ``ECPDS_PASSWORD`` (a data user). The API address is
``--api`` / ``ECPDS_API_URL``, by default ``http://127.0.0.1:<ECPDS_MONITOR_PORT + 1>``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, BinaryIO

import httpx
import orjson
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from bus.errors import EcpdsError
from bus.settings import Settings

CHUNK = 1024 * 1024
PROGRESS_FROM = 4 * 1024 * 1024
err = Console(stderr=True)


def _chunks(source: BinaryIO, progress: Progress | None, task: TaskID | None) -> Iterator[bytes]:
    while chunk := source.read(CHUNK):
        if progress is not None and task is not None:
            progress.advance(task, len(chunk))
        yield chunk


def _local_admin_token() -> str | None:
    """The admin token ``ecpds up`` left for the local operator (mode 0600), if readable."""
    path = Settings.from_env().var_dir / "secrets" / "admin.token"
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def default_api() -> str:
    """The ingest API's address on this machine (the monitor's port + 1)."""
    try:
        port = Settings.from_env().monitor_port + 1
    except EcpdsError:
        port = 8081
    return f"http://127.0.0.1:{port}"


def put_command(
    file: Annotated[
        Path | None,
        typer.Argument(help="file to put (stdin when absent)", exists=True, dir_okay=False),
    ] = None,
    destination: Annotated[str, typer.Option("--destination", "-d", help="destination name")] = "",
    target: Annotated[
        str | None, typer.Option(help="name at the destination (default: the file name)")
    ] = None,
    priority: Annotated[int, typer.Option(min=0, max=99, help="0-99, lower first")] = 99,
    lifetime: Annotated[str | None, typer.Option(help="e.g. 2d (default: destination's)")] = None,
    delay: Annotated[str | None, typer.Option(help="queue later, e.g. 10m")] = None,
    at: Annotated[str | None, typer.Option(help="queue at yyyyMMddHHmmss or ISO 8601")] = None,
    metadata: Annotated[str | None, typer.Option(help="k=v,k2=v2")] = None,
    standby: Annotated[bool, typer.Option("--standby", help="queue in HOLD")] = False,
    asap: Annotated[bool, typer.Option("--asap", help="deliver as soon as possible")] = False,
    event: Annotated[bool, typer.Option("--event", help="notify when delivered")] = False,
    requeue: Annotated[bool, typer.Option("--requeue", help="new instance of a known file")] = (
        False
    ),
    force: Annotated[bool, typer.Option("--force", help="force a new file instance")] = False,
    version: Annotated[str | None, typer.Option(help="version (uniqueness key part)")] = None,
    identity: Annotated[str | None, typer.Option(help="recurring-product key")] = None,
    api: Annotated[str | None, typer.Option(envvar="ECPDS_API_URL", help="API base URL")] = None,
    token: Annotated[str | None, typer.Option(envvar="ECPDS_API_TOKEN", help="API token")] = None,
    user: Annotated[str | None, typer.Option(envvar="ECPDS_USER", help="data user")] = None,
    password: Annotated[
        str | None, typer.Option(envvar="ECPDS_PASSWORD", help="data user password")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the answer as JSON")] = False,
    id_only: Annotated[
        bool, typer.Option("--id-only", hidden=True, help="print the data file id alone")
    ] = False,
) -> None:
    """Put a file into ecpds: store it and queue its transfers; prints the data file id and the
    ids of the transfers it queued."""
    if not destination:
        err.print("[red]error:[/red] destination: --destination is required")
        raise typer.Exit(2)
    if requeue and force:
        err.print("[red]error:[/red] force: give --requeue or --force, not both")
        raise typer.Exit(2)
    name = target or (file.name if file is not None else None)
    if not name:
        err.print("[red]error:[/red] target: --target is required when reading stdin")
        raise typer.Exit(2)
    query: dict[str, str] = {"destination": destination, "target": name}
    query["priority"] = str(priority)
    for key, value in (
        ("lifetime", lifetime),
        ("delay", delay),
        ("at", at),
        ("metadata", metadata),
        ("version", version),
        ("identity", identity),
    ):
        if value:
            query[key] = value
    for key, flag in (
        ("standby", standby),
        ("asap", asap),
        ("event", event),
        ("requeue", requeue),
        ("force", force),
    ):
        if flag:
            query[key] = "true"
    if file is not None:
        query["original"] = str(file)
    headers = {"Content-Type": "application/octet-stream"}
    auth: httpx.Auth = httpx.Auth()  # none: the token goes in the header
    token = token or _local_admin_token()
    if token:
        headers["Authorization"] = f"Bearer {token}"
    elif user and password:
        auth = httpx.BasicAuth(user, password)
    else:
        err.print("[red]error:[/red] authorization: give --token, or --user and --password")
        raise typer.Exit(2)
    size = file.stat().st_size if file is not None else None
    if size is not None:
        headers["Content-Length"] = str(size)  # lets the API refuse a too large file up front
    url = f"{(api or default_api()).rstrip('/')}/api/v1/datafiles"
    source = file.open("rb") if file is not None else sys.stdin.buffer
    progress = (
        Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=err,
        )
        if size is not None and size >= PROGRESS_FROM
        else None
    )
    try:
        task = progress.add_task(name, total=size) if progress is not None else None
        if progress is not None:
            progress.start()
        with httpx.Client(timeout=httpx.Timeout(60.0, connect=10.0)) as client:
            response = client.post(
                url,
                params=query,
                headers=headers,
                auth=auth,
                content=_chunks(source, progress, task),
            )
    except httpx.HTTPError as error:
        err.print(f"[red]error:[/red] cannot reach the ingest API at {url}: {escape(str(error))}")
        raise typer.Exit(1) from error
    finally:
        if progress is not None:
            progress.stop()
        if file is not None:
            source.close()
    _report(response, "json" if as_json else "id" if id_only else "text")


def _report(response: httpx.Response, output: str = "text") -> None:
    """Print the answer as ``output`` says: ``text`` (labelled ids), ``json`` (the answer as
    one object) or ``id`` (the data file id alone, as OpenECPDS's ``ecpds`` prints it)."""
    try:
        body = response.json()
    except ValueError:
        body = {"message": response.text}
    if output == "json":
        typer.echo(orjson.dumps(body).decode())
    if response.status_code in (200, 201):  # 200: these bytes were registered by an earlier put
        if output == "id":
            typer.echo(body["data_file_id"])
        elif output == "text":
            typer.echo(f"data-file {body['data_file_id']}")
            for t in body.get("transfers", ()):
                typer.echo(f"transfer {t['transfer_id']} {t['destination']} {t['status']}")
        return
    field = body.get("field", "")
    message = body.get("message", response.reason_phrase)
    text = f"{field}: {message}" if field else str(message)
    err.print(f"[red]refused:[/red] {escape(text)}")
    raise typer.Exit(2 if 400 <= response.status_code < 500 else 1)


def main() -> None:
    """Run ``put`` alone (``python -m cli.put``), until the lead mounts it in ``ecpds``."""
    app = typer.Typer(add_completion=False)
    app.command("put")(put_command)
    app()


if __name__ == "__main__":
    main()
