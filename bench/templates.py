"""Template benchmark: target-path renders/s against a plain ``str.format`` of the same path.

Prints one JSON object. The mover renders the Host Directory template once per transfer, so
rendering must cost little more than building the path by hand. Measured in the same run:

- ``simple``: ``/home/$destination[name]/$dataFile[metaStream]/$date/`` (one default line, a
  date, and the target appended) beside ``"/home/{}/{}/{}/{}".format(...)`` of the same values
  with the same date formatting done by ``datetime.strftime`` (the baseline);
- ``conditional``: a four-line template with conditions (string equality, a regex, starts
  with) whose best line must be chosen, beside the same baseline (what a hand-written ``if``
  chain would still have to format);
- ``name``: an ``acquisition.target`` template with substrings (``$target[2..12]``), beside a
  slice + ``str.format``;
- ``parse``: templates compiled per second (done once per host definition, for scale).

Rates use process CPU time, best of ``ROUNDS``, ``RENDERS`` renders per round; one core.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bus.templates.directory import RenderContext, parse
from bus.templates.names import NameContext, parse_name

RENDERS = 50_000
ROUNDS = 5
TARGET_RATIO = 0.25  # at least a quarter of the hand-built path's rate

SIMPLE = "/home/$destination[name]/$dataFile[metaStream]/$date/"
CONDITIONAL = "\n".join(
    [
        "/home/$destination[name]/default/",
        "($destination[name]==archive) /archive/$dataFile[metaStream]/$date[yyyy/MM/dd]/",
        "($dataTransfer[target]=={.*\\.bufr}; $host[name].=ftp) /bufr/$metadata[targetdir]/",
        "($destination[name]==ops; $dataFile[metaStream]==oper) /ops/$dataFile[metaStream]/$date/",
    ]
)
NAME = "$date[yyyy]/$target[2..12]/$name"


def measure(step: Callable[[], object]) -> float:
    """Best calls/s (process CPU time) of ``step`` over ROUNDS rounds of RENDERS calls."""
    best = 0.0
    for _ in range(ROUNDS):
        start = time.process_time()
        for _ in range(RENDERS):
            step()
        elapsed = time.process_time() - start
        best = max(best, RENDERS / elapsed if elapsed else 0.0)
    return best


def main() -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    now = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    context = RenderContext(
        now=now,
        host_name="ftp-primary",
        destination_name="ops",
        data_file_meta_stream="oper",
        transfer_target="fc/2026112712/t2m.grib",
        metadata={"targetdir": "incoming"},
    )
    simple, conditional = parse(SIMPLE), parse(CONDITIONAL)
    assert simple.render(context) == "/home/ops/oper/20261127/fc/2026112712/t2m.grib"
    assert conditional.render(context) == "/ops/oper/20261127/fc/2026112712/t2m.grib"

    def baseline() -> str:
        path = "/home/{}/{}/{}/{}".format(
            context.destination_name,
            context.data_file_meta_stream,
            context.now.strftime("%Y%m%d"),
            context.transfer_target,
        )
        return path.replace("//", "/")

    assert baseline() == simple.render(context)
    name_context = NameContext("A1D11271200112712001", "/in/A1D", "A1D112712001", now)
    name = parse_name(NAME)
    assert name.render(name_context) == "2026/D112712001/A1D112712001"

    def name_baseline() -> str:
        return "{}/{}/{}".format(
            name_context.now.strftime("%Y"), name_context.target[2:12], name_context.name
        )

    rates = {
        "simple": measure(lambda: simple.render(context)),
        "conditional": measure(lambda: conditional.render(context)),
        "baseline_str_format": measure(baseline),
        "name": measure(lambda: name.render(name_context)),
        "name_baseline_str_format": measure(name_baseline),
    }
    parse_rate = 0.0
    start = time.process_time()
    count = 2_000
    for i in range(count):  # distinct texts: no cache hit
        parse(CONDITIONAL + f"\n($moverName==m{i}) /m/")
    parse_rate = count / (time.process_time() - start)
    base = rates["baseline_str_format"]
    print(
        json.dumps(
            {
                "benchmark": "templates",
                "renders_per_round": RENDERS,
                "rounds": ROUNDS,
                "simple_renders_per_s": round(rates["simple"]),
                "conditional_renders_per_s": round(rates["conditional"]),
                "baseline_str_format_per_s": round(base),
                "ratio_simple_to_baseline": round(rates["simple"] / base, 3),
                "ratio_conditional_to_baseline": round(rates["conditional"] / base, 3),
                "name_renders_per_s": round(rates["name"]),
                "name_baseline_per_s": round(rates["name_baseline_str_format"]),
                "ratio_name_to_baseline": round(
                    rates["name"] / rates["name_baseline_str_format"], 3
                ),
                "parses_per_s": round(parse_rate),
                "target_ratio": TARGET_RATIO,
                "meets_target": rates["simple"] / base >= TARGET_RATIO,
                "load_average_1m": round(os.getloadavg()[0], 2),
                "cpus": os.cpu_count(),
            }
        )
    )


if __name__ == "__main__":
    main()
