"""The import rules of DESIGN.md §2, checked on the source tree."""

from __future__ import annotations

import ast
from pathlib import Path

from bus.settings import ROOT

PACKAGES = ("bus", "protocols", "store", "producers", "consumers", "projections", "cli")
ALLOWED: dict[str, set[str]] = {
    "bus": set(),
    "protocols": {"bus"},
    "store": {"bus", "protocols"},
    "producers": {"bus", "protocols", "store"},
    "consumers": {"bus", "protocols", "store"},
    "projections": {"bus", "store"},
    "cli": set(PACKAGES),
}
# the cross-stage import DESIGN.md §2 allows: the portal reads the read models through
# projections' read-only query module, and the ingest API its monitoring summary through another
READ_MODELS = {"projections.portal", "projections.products"}
# the consumers (scheduler, movers, notifier, janitor, backup) talk only through events: none
# imports another's sub-package (producers' HTTP adapters may import their own ingest core)
STAGES = ("consumers",)


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def violations() -> list[str]:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT)
            for name in imports_of(path):
                top = name.split(".")[0]
                if package == "producers" and name in READ_MODELS:
                    continue
                if top in PACKAGES and top != package and top not in ALLOWED[package]:
                    found.append(f"{rel}: imports {name}")
                if package in STAGES and top == package:
                    own = rel.parts[1] if len(rel.parts) > 2 else None
                    other = name.split(".")[1] if name.count(".") >= 1 else None
                    if own and other and other != own and (ROOT / package / other).is_dir():
                        found.append(f"{rel}: stage {own} imports stage {other} ({name})")
    return found


def test_packages_import_only_what_design_allows() -> None:
    """No package imports a package that DESIGN.md §2 does not allow it to import."""
    assert violations() == []


def test_rule_checker_catches_a_forbidden_import(tmp_path: Path) -> None:
    """The checker reports a bus module that imports a stage (so the rule test can fail)."""
    bad = tmp_path / "m.py"
    bad.write_text("from consumers.scheduler import core\nimport store.local\n")
    names = imports_of(bad)
    tops = {n.split(".")[0] for n in names}
    assert tops - ALLOWED["bus"] == {"consumers", "store"}


def test_top_level_is_the_fixed_layout() -> None:
    """Only the folders DESIGN.md §2 names (or the README justifies) sit at the top level."""
    expected = {
        "bus",
        "producers",
        "consumers",
        "projections",
        "schemas",
        "tests",
        "infra",
        "protocols",
        "store",
        "cli",
        "bench",
        "native",
    }
    present = {p.name for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith(".")}
    present -= {"var", "__pycache__", "ecpds.egg-info"}
    assert present <= expected, present - expected
