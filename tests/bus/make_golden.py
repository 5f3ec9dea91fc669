"""Write the golden encoded fixture of every event schema version that has none yet.

Run ``.venv/bin/python -m tests.bus.make_golden`` after adding an event or changing a schema.
A fixture is named ``<full name>@<fingerprint hex>.bin`` and holds the encoding of the sample
from ``tests/bus/samples.py``. Existing fixtures are never rewritten: they are the proof that
bytes written by a published schema still decode (see ``schemas/README.md``).
"""

from __future__ import annotations

import sys
from pathlib import Path

from bus import codec
from tests.bus.samples import SAMPLES

GOLDEN = Path(__file__).parent / "golden"


def golden_path(name: str, fingerprint: bytes) -> Path:
    """Where the fixture of one schema version lives."""
    return GOLDEN / f"{name}@{fingerprint.hex()}.bin"


def main() -> int:
    """Write missing fixtures; print what was written."""
    GOLDEN.mkdir(exist_ok=True)
    written = 0
    for name, event in sorted(SAMPLES.items()):
        path = golden_path(name, codec.CATALOGUE.fingerprint_of(name))
        if path.exists():
            continue
        path.write_bytes(codec.encode(event))
        print(f"wrote {path.name}")
        written += 1
    print(f"{written} new golden fixtures, {len(SAMPLES) - written} already there")
    return 0


if __name__ == "__main__":
    sys.exit(main())
