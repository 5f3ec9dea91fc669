"""Shared by the benchmarks: bring up the local Kafka/PostgreSQL the same way `make up` does
(under ECPDS_VAR, default var/bench, on the bench ports) and print results as JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from bus.settings import ROOT, Settings

os.environ.setdefault("ECPDS_VAR", "var/bench")
os.environ.setdefault("ECPDS_KAFKA_PORT", "39092")
os.environ.setdefault("ECPDS_PG_PORT", "35433")


def settings() -> Settings:
    return Settings.from_env()


def service(settings: Settings, script: str, action: str = "start") -> None:
    result = subprocess.run(
        ["bash", str(ROOT / "infra" / script), action],
        env={**os.environ, **settings.infra_env()},
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        sys.exit(f"{script} {action} failed: {result.stderr or result.stdout}")


def emit(result: dict[str, Any]) -> None:
    json.dump(result, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
