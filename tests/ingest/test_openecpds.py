"""OpenECPDS compatibility, called as OpenECPDS's documentation writes the calls: its REST API
v1 under ``/ecpds/v1/`` and its ``ecpds -destination D -source F ...`` command line, against
the ingest API as a real process (``python -m producers.api.runner``) on real Kafka."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
import psycopg
import pytest

from bus.config.apply import events_for, plan
from bus.config.view import ConfigView, config_spec
from bus.events.config import PortalOperation
from bus.publisher import Publisher
from bus.settings import ROOT
from bus.topics import apply_topics
from projections.migrate import migrate
from tests.config import factories as f
from tests.conftest import free_port
from tests.ingest.conftest import TOKEN, Names
from tests.ingest.test_process import Server
from tests.projections.support import drop

pytestmark = pytest.mark.kafka
V1 = "/ecpds/v1"
OPS = {"Authorization": f"Bearer {TOKEN}"}


SCHEMA = f"oe_{os.getpid()}"
CYCLE = datetime(2026, 12, 7, tzinfo=UTC)


async def product_read_models(dsn: str) -> None:
    """Read models holding product oper/00 at steps 24 and 48: status completed for 24, its
    two files at site-a (one delivered) of today's cycle, and one of yesterday's."""
    await migrate(dsn, SCHEMA)
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute(f"SET search_path = {SCHEMA}")
        await conn.execute(
            "INSERT INTO product_status VALUES ('oper/00/24/fc', 'oper', '00', '24', 'fc',"
            " 'COMPLETED', %s, %s, 'token:ops', gen_random_uuid())",
            (CYCLE + timedelta(hours=5), CYCLE + timedelta(hours=5)),
        )
        five, six = CYCLE + timedelta(hours=5), CYCLE + timedelta(hours=6)
        rows = [
            ("t1", "site-a", "oper/00/24/fc", CYCLE, five, None),
            ("t2", "site-a", "oper/00/24/fc", CYCLE, five, six),
            ("t0", "site-a", "oper/00/24/fc", CYCLE - timedelta(days=1), CYCLE, CYCLE),
            ("t3", "site-b", "oper/00/48/fc", CYCLE, six, None),
        ]
        for row in rows:
            await conn.execute(
                "INSERT INTO product_transfers (transfer_id, destination, product, base_time,"
                " arrived_at, delivered_at) VALUES (%s, %s, %s, %s, %s, %s)",
                row,
            )


@pytest.fixture(scope="module")
async def server(kafka: str, postgres: str, names: Names) -> AsyncIterator[Server]:
    await apply_topics(kafka, [config_spec(names.config)])
    entities = [
        f.destination("site-a", country="fr", properties={"mail.to": "ops@site.example"}),
        f.destination("site-b"),
        f.user("carol", destinations=("site-a",), operations=(PortalOperation.PUT,)),
    ]
    async with Publisher(kafka) as publisher:
        for key, event in events_for(plan(ConfigView(), entities), source="test"):  # type: ignore[arg-type]
            await publisher.publish(names.config, key, event)
    await product_read_models(postgres)
    s = Server(names, free_port(), schema=SCHEMA)
    await asyncio.to_thread(s.start)
    yield s
    await asyncio.to_thread(s.stop)
    await drop(postgres, SCHEMA)


def ecpds(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    """The ``ecpds`` command, as a script calls it (the API address and token from the
    environment)."""
    env = {**os.environ, "ECPDS_API_URL": server.url, "ECPDS_API_TOKEN": TOKEN}
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_version_needs_no_credentials(server: Server) -> None:
    """`GET /ecpds/v1/version` answers {"status": "ok", "version": ...} to anyone."""
    got = httpx.get(f"{server.url}{V1}/version")
    assert got.status_code == 200
    assert got.json()["status"] == "ok"
    assert got.json()["version"]


def test_datafile_put_and_size(server: Server, tmp_path: Path) -> None:
    """`datafile/put` with OpenECPDS's parameters registers the body and answers its id; the
    file is then seen by `/api/v1` with the priority, metadata and standby given, and
    `datafile/size?id=` answers its size."""
    data = b"grib" * 1000
    got = httpx.post(
        f"{server.url}{V1}/datafile/put",
        params={
            "destination": "site-a", "source": "/data/out/an.grib", "priority": "7",
            "metadata": "stream=oper,step=6", "lifetime": "2d", "standby": "true",
        },
        content=data, headers=OPS,
    )  # fmt: skip
    assert got.status_code == 201, got.text
    body = got.json()
    assert body["status"] == "ok"
    dfid = body["id"]
    assert body["transfers"] == [f"{dfid}-site-a"]
    seen = httpx.get(f"{server.url}/api/v1/datafiles/{dfid}", headers=OPS).json()
    assert (seen["target"], seen["priority"], seen["standby"]) == ("an.grib", 7, True)
    assert seen["metadata"] == {"stream": "oper", "step": "6"}
    size = httpx.get(f"{server.url}{V1}/datafile/size", params={"id": dfid}, headers=OPS)
    assert size.json() == {"status": "ok", "size": len(data)}


def test_errors_in_openecpds_shape(server: Server) -> None:
    """Refusals answer {"status": "error", "message": ...}: no credentials 401, an unknown
    destination 404 naming it, a put without bytes 400 saying how to send them."""
    anonymous = httpx.get(f"{server.url}{V1}/destination/list")
    assert anonymous.status_code == 401
    assert anonymous.json()["status"] == "error"
    unknown = httpx.post(
        f"{server.url}{V1}/datafile/put",
        params={"destination": "nowhere", "target": "x"},
        content=b"x",
        headers=OPS,
    )
    assert unknown.status_code == 404
    assert unknown.json()["status"] == "error"
    assert "nowhere" in unknown.json()["message"]
    empty = httpx.get(
        f"{server.url}{V1}/datafile/put",
        params={"destination": "site-a", "source": "/srv/x.grib"},
        headers=OPS,
    )
    assert empty.status_code == 400
    assert "request body" in empty.json()["message"]


def test_destination_list_get_and_metadata(server: Server) -> None:
    """`destination/list` filters by type and name; `destination/{name}` and its `metadata`
    answer the configured destination; an unknown one is an error."""
    listed = httpx.get(f"{server.url}{V1}/destination/list", headers=OPS).json()
    assert listed["status"] == "ok"
    assert [d["name"] for d in listed["destinationList"]] == ["site-a", "site-b"]
    only = httpx.get(f"{server.url}{V1}/destination/list", params={"id": "-b"}, headers=OPS)
    assert [d["name"] for d in only.json()["destinationList"]] == ["site-b"]
    french = httpx.get(f"{server.url}{V1}/destination/list", params={"iso": "FR"}, headers=OPS)
    assert [d["name"] for d in french.json()["destinationList"]] == ["site-a"]
    one = httpx.get(f"{server.url}{V1}/destination/site-a", headers=OPS).json()
    assert (one["status"], one["destination"]["name"]) == ("ok", "site-a")
    meta = httpx.get(f"{server.url}{V1}/destination/site-a/metadata", headers=OPS).json()
    assert meta == {"status": "ok", "metadata": {"mail.to": "ops@site.example"}}
    missing = httpx.get(f"{server.url}{V1}/destination/nowhere", headers=OPS)
    assert (missing.status_code, missing.json()["status"]) == (400, "error")


def test_incoming_users_and_associations(server: Server) -> None:
    """An incoming user added with id/pass/email/iso, associated with a destination, is
    listed for it and in the associations; the association removed, it is not; deleting the
    user deactivates it (a soft delete). A data user cannot manage users (403)."""
    url = f"{server.url}{V1}/incoming"
    added = httpx.post(
        f"{url}/user/add",
        data={"id": "dave", "pass": "s3cret-pass", "email": "dave@site.example", "iso": "fr"},
        headers=OPS,
    )
    assert added.json() == {"status": "ok", "id": "dave"}, added.text
    again = httpx.post(f"{url}/user/add", data={"id": "dave", "pass": "x"}, headers=OPS)
    assert (again.status_code, again.json()["status"]) == (412, "error")
    linked = httpx.post(
        f"{url}/association/add", json={"id": "dave", "destination": "site-b"}, headers=OPS
    )
    assert linked.json()["status"] == "ok", linked.text
    users = httpx.get(f"{url}/user/list", params={"destination": "site-b"}, headers=OPS).json()
    assert [(u["id"], u["email"], u["iso"]) for u in users["userList"]] == [
        ("dave", "dave@site.example", "fr")
    ]
    pairs = httpx.get(f"{url}/association/list", params={"id": "dave"}, headers=OPS).json()
    assert pairs["associationList"] == [{"id": "dave", "destination": "site-b"}]
    unlinked = httpx.request(
        "DELETE",
        f"{url}/association/del",
        params={"id": "dave", "destination": "site-b"},
        headers=OPS,
    )
    assert unlinked.json()["status"] == "ok"
    users = httpx.get(f"{url}/user/list", params={"destination": "site-b"}, headers=OPS).json()
    assert users["userList"] == []
    deleted = httpx.delete(f"{url}/user/del/dave", headers=OPS)
    assert deleted.json()["status"] == "ok"
    everyone = httpx.get(f"{url}/user/list", headers=OPS).json()["userList"]
    assert next(u for u in everyone if u["id"] == "dave")["active"] is False
    as_user = httpx.post(
        f"{url}/user/add", data={"id": "eve", "pass": "p"}, auth=("carol", "portal-secret")
    )
    assert as_user.status_code == 403


def test_monitoring_summary_of_a_product_from_the_read_models(server: Server) -> None:
    """`monitoring/summary/{product}/{time}` lists every step and type of the product with its
    generation status and, per destination, its latest cycle's files and deliveries;
    `.../{step}/{type}` one of them; an unknown product is a 404 in OpenECPDS's shape."""
    got = httpx.get(f"{server.url}{V1}/monitoring/summary/oper/00", headers=OPS)
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["status"] == "ok"
    by_name = {p["product"]: p for p in body["summary"]}
    assert set(by_name) == {"oper/00/24/fc", "oper/00/48/fc"}
    day = by_name["oper/00/24/fc"]
    assert (day["status"], day["setBy"], day["step"]) == ("COMPLETED", "token:ops", "24")
    assert day["destinations"] == [
        {
            "destination": "site-a",
            "cycle": "2026-12-07T00:00:00Z",
            "files": 2,
            "delivered": 1,
            "lastArrival": "2026-12-07T05:00:00Z",
            "lastDelivery": "2026-12-07T06:00:00Z",
        }
    ]
    assert by_name["oper/00/48/fc"]["status"] is None
    one = httpx.get(f"{server.url}{V1}/monitoring/summary/oper/00/48/fc", headers=OPS).json()
    assert [p["product"] for p in one["summary"]] == ["oper/00/48/fc"]
    missing = httpx.get(f"{server.url}{V1}/monitoring/summary/oper/12", headers=OPS)
    assert missing.status_code == 404
    assert missing.json()["status"] == "error"
    assert httpx.get(f"{server.url}{V1}/monitoring/summary/oper/00").status_code == 401


def test_openecpds_command_line_puts_a_file(server: Server, tmp_path: Path) -> None:
    """`ecpds -destination D -source F -target T -priority -lifetime -metadata -at -standby
    -event` runs unchanged: it prints the data file id alone, and the file carries each
    option."""
    source = tmp_path / "an.grib"
    source.write_bytes(b"grib data")
    at = (datetime.now(UTC) + timedelta(hours=2)).replace(microsecond=0)
    result = ecpds(
        server, "-destination", "site-a", "-source", str(source), "-target", "out/",
        "-priority", "3", "-lifetime", "1d", "-metadata", "stream=enfo,step=12",
        "-at", f"{at:%Y%m%d%H%M%S}", "-standby", "-event", "-verbose",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    dfid = result.stdout.strip()
    assert len(dfid) == 32
    seen = httpx.get(f"{server.url}/api/v1/datafiles/{dfid}", headers=OPS).json()
    assert (seen["target"], seen["priority"], seen["standby"]) == ("out/an.grib", 3, True)
    assert seen["metadata"] == {"stream": "enfo", "step": "12"}
    assert datetime.fromisoformat(seen["scheduled_time"]) == at


def test_openecpds_product_status_and_unknown_modes_are_refused(server: Server) -> None:
    """`ecpds -expected` naming only part of the product is refused (exit 2) naming what is
    missing, before anything is published; a mode ecpds does not offer (-scheduler) is
    refused naming it."""
    expected = ecpds(server, "-expected", "-metadata", "stream=oper,time=00,step=0")
    assert expected.returncode == 2
    assert "-metadata must name the product: type missing" in expected.stderr
    scheduler = ecpds(server, "-scheduler", "-start")
    assert scheduler.returncode == 2
    assert "-scheduler" in scheduler.stderr


def test_put_prints_transfer_ids_and_json(server: Server, tmp_path: Path) -> None:
    """`ecpds put` prints the data file id and each transfer id it queued (the ids the
    transfer verbs take); with --json one JSON object, the API's answer."""
    source = tmp_path / "t.bin"
    source.write_bytes(b"transfer ids")
    text = ecpds(server, "put", str(source), "--destination", "site-a")
    assert text.returncode == 0, text.stderr
    first, second = text.stdout.splitlines()
    dfid = first.removeprefix("data-file ")
    assert second.split()[:3] == ["transfer", f"{dfid}-site-a", "site-a"]
    other = tmp_path / "j.bin"
    other.write_bytes(b"as json")
    as_json = ecpds(server, "put", str(other), "--destination", "site-a", "--json")
    assert as_json.returncode == 0, as_json.stderr
    body = orjson.loads(as_json.stdout)
    assert body["status"] == "ok"
    assert [t["transfer_id"] for t in body["transfers"]] == [f"{body['data_file_id']}-site-a"]
