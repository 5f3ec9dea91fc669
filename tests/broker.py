"""A Kafka broker of one test's own, for tests that stop or kill it (the suite's broker is
shared by the whole session and never stopped): started through ``infra/kafka/kafka.sh`` under
its own var dir and ports next to this session's, stopped and removed afterwards."""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

from bus.settings import ROOT, Settings
from tests.conftest import free_port


def _pair_free(port: int) -> bool:
    """Whether ``port`` and ``port + 1`` (Kafka's controller) are both free."""
    for p in (port, port + 1):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                return False
    return True


def kafka_script(settings: Settings, action: str) -> None:
    """Run ``kafka.sh action`` for ``settings``' broker; a failure fails the test."""
    env = {**os.environ, **settings.infra_env()}
    env.pop("ECPDS_KAFKA_CONTROLLER_PORT", None)  # port + 1 of this broker, not the suite's
    done = subprocess.run(
        ["bash", str(ROOT / "infra" / "kafka" / "kafka.sh"), action],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr or done.stdout


@contextmanager
def private_broker(settings: Settings, unique: str, offset: int) -> Iterator[Settings]:
    """Settings of a running broker of its own (port near ``settings``' + ``offset``)."""
    candidates = (settings.kafka_port + offset, *(free_port() for _ in range(20)))
    port = next(p for p in candidates if _pair_free(p))
    var = ROOT / "var" / f"test-broker-{unique}"
    mine = dataclasses.replace(
        settings, var_dir=var, kafka_port=port, kafka_bootstrap=f"127.0.0.1:{port}"
    )
    kafka_script(mine, "start")
    try:
        yield mine
    finally:
        kafka_script(mine, "stop")
        shutil.rmtree(var, ignore_errors=True)
