"""``make audit``: the pinned dependencies of pyproject.toml checked against vulnerability lists.

Sources, both offline (no vulnerability service is reachable from this machine: PyPI's JSON API
and OSV are not, only package indexes through pip):

- ``infra/audit/advisories.json``, kept by hand with the project (always used);
- the ``safety-db`` registry package (PyUp's offline database, a wheel fetched with ``pip
  download --no-deps`` into ``var/cache/audit``, read from the wheel, never installed), when pip
  can fetch it. Its last release is from July 2021: it catches old pins only.

Prints each source used (and its date), each pin an advisory covers, and exits 1 on any.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
import zipfile
from datetime import UTC, datetime
from pathlib import Path

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = Path(__file__).with_name("advisories.json")
SAFETY_DB = "safety-db==2021.7.17"
_PIN = re.compile(r"^\s*([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?\s*==\s*([^\s;]+)")

Advisory = tuple[str, str, str]  # id, affected specifiers, summary


def pins(pyproject: Path) -> dict[str, Version]:
    """Every ``name==version`` of the project's dependencies and optional dependencies."""
    project = tomllib.loads(pyproject.read_text())["project"]
    lines = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        lines.extend(extra)
    found: dict[str, Version] = {}
    for line in lines:
        match = _PIN.match(line)
        if match:
            found[canonicalize_name(match[1])] = Version(match[2])
    return found


def shipped(path: Path = SHIPPED) -> dict[str, list[Advisory]]:
    data = json.loads(path.read_text())
    return {
        canonicalize_name(name): [(a["id"], a["affected"], a["summary"]) for a in entries]
        for name, entries in data.items()
        if not name.startswith("$")
    }


def safety_db(cache: Path) -> tuple[dict[str, list[Advisory]], str] | None:
    """The safety-db advisories and their date, or None when pip cannot fetch the wheel."""
    cache.mkdir(parents=True, exist_ok=True)
    wheels = sorted(cache.glob("safety_db-*.whl"))
    if not wheels:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", SAFETY_DB, "-d", cache],
            check=False,
            capture_output=True,
            timeout=120,
        )
        wheels = sorted(cache.glob("safety_db-*.whl"))
    if not wheels:
        return None
    with zipfile.ZipFile(wheels[-1]) as wheel:
        data = json.loads(wheel.read("safety_db/insecure_full.json"))
    stamp = datetime.fromtimestamp(data.get("$meta", {}).get("timestamp", 0), UTC)
    out: dict[str, list[Advisory]] = {}
    for name, entries in data.items():
        if name.startswith("$"):
            continue
        out[canonicalize_name(name)] = [
            (e.get("cve") or e["id"], ",".join(e["specs"]), e["advisory"][:100]) for e in entries
        ]
    return out, f"{wheels[-1].name} (data of {stamp:%Y-%m-%d})"


def findings(
    pinned: dict[str, Version], advisories: dict[str, list[Advisory]]
) -> list[tuple[str, Version, Advisory]]:
    """Each (package, pinned version, advisory) whose affected versions include the pin."""
    out = []
    for name, version in sorted(pinned.items()):
        for advisory in advisories.get(name, []):
            for spec in advisory[1].split("||"):
                try:
                    if version in SpecifierSet(spec):
                        out.append((name, version, advisory))
                        break
                except InvalidSpecifier:
                    continue
    return out


def main() -> int:
    pinned = pins(ROOT / "pyproject.toml")
    sources = [(f"{SHIPPED.relative_to(ROOT)} (kept with the project)", shipped())]
    fetched = safety_db(ROOT / "var" / "cache" / "audit")
    if fetched is not None:
        sources.append((f"registry package {fetched[1]}", fetched[0]))
    else:
        print("safety-db could not be fetched with pip: the shipped list only")
    bad = 0
    for label, advisories in sources:
        found = findings(pinned, advisories)
        print(f"{label}: {len(pinned)} pins checked, {len(found)} affected")
        for name, version, (ident, affected, summary) in found:
            print(f"  {name}=={version}: {ident} (affected {affected}): {summary}")
        bad += len(found)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
