"""``make audit``: pins are read from pyproject.toml and matched against the shipped list."""

from __future__ import annotations

import importlib.util
from types import ModuleType

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from bus.settings import ROOT


def audit() -> ModuleType:
    spec = importlib.util.spec_from_file_location("audit", ROOT / "infra" / "audit" / "audit.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_an_affected_pin_is_reported_and_the_project_pins_are_not() -> None:
    """An old jinja2 pin matches the shipped advisories; the project's own pins match none,
    and every shipped specifier parses."""
    a = audit()
    advisories = a.shipped()
    for entries in advisories.values():
        for _, affected, _ in entries:
            SpecifierSet(affected)
    old = a.findings({"jinja2": Version("3.1.4")}, advisories)
    assert {ident for _, _, (ident, _, _) in old} == {
        "CVE-2024-56201",
        "CVE-2024-56326",
        "CVE-2025-27516",
    }
    pinned = a.pins(ROOT / "pyproject.toml")
    assert pinned["jinja2"] == Version("3.1.6")
    assert a.findings(pinned, advisories) == []
