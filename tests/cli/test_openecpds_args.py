"""OpenECPDS's ``ecpds`` command line translated into ``ecpds put`` (pure: no process)."""

from __future__ import annotations

import pytest

from cli.openecpds import Unsupported, is_openecpds, translate


def test_a_single_dash_openecpds_option_marks_the_command_line() -> None:
    """Only a first word that is an OpenECPDS option marks an OpenECPDS command line; ecpds's
    own verbs and double-dash options do not."""
    assert is_openecpds(["-destination", "d", "-source", "f"])
    assert is_openecpds(["-expected", "-metadata", "stream=oper"])
    assert not is_openecpds(["put", "-d", "d"])
    assert not is_openecpds(["--help"])
    assert not is_openecpds(["-h"])
    assert not is_openecpds([])


def test_options_map_onto_put() -> None:
    """Each option maps onto its put option, flags onto flags, the source last; a target
    ending in / keeps the source's name; -echost/-ecport name the API; tuning is dropped."""
    got = translate(
        [
            "-destination", "site", "-source", "/data/a.grib", "-target", "in/",
            "-priority", "5", "-lifetime", "2d", "-metadata", "k=v", "-at", "20261207120000",
            "-standby", "-event", "-asap", "-verbose", "-tryCount", "3",
            "-echost", "api.example", "-ecport", "9000", "-user", "u", "-pass", "p",
        ]
    )  # fmt: skip
    assert got == [
        "put", "--id-only", "--destination", "site", "--target", "in/a.grib",
        "--priority", "5", "--metadata", "k=v", "--lifetime", "2d", "--at", "20261207120000",
        "--user", "u", "--password", "p", "--asap", "--event", "--standby",
        "--api", "http://api.example:9000", "/data/a.grib",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["-started", "-metadata", "stream=oper"], "time, step, type missing"),
        (["-destination", "d", "-scheduler"], "-scheduler"),
        (["-destination"], "needs a value"),
        (["-destination", "d", "--target", "x"], "not an OpenECPDS option"),
        (["-destination", "d", "-at", "2026", "-format", "yyyy"], "-format"),
    ],
)
def test_what_ecpds_does_not_offer_is_refused(argv: list[str], says: str) -> None:
    """A product status without the whole product, modes ecpds lacks, a missing value, a
    foreign option and another -at format are refused, the message naming what."""
    with pytest.raises(Unsupported, match=says):
        translate(argv)


def test_product_status_maps_onto_ecpds_product() -> None:
    """``-expected|-started|-completed|-reset -metadata stream=..,time=..,step=..,type=..
    [-at]`` is ``ecpds product <status>`` with the product's four fields."""
    got = translate(
        ["-completed", "-metadata", "stream=oper,time=12,step=24,type=fc", "-at", "20261207120000"]
    )
    assert got == [
        "product", "completed", "--stream", "oper", "--time", "12", "--step", "24",
        "--type", "fc", "--at", "20261207120000",
    ]  # fmt: skip
    assert translate(["-reset", "-metadata", "type=fc, step=0,time=00,stream=enfo"])[:2] == [
        "product",
        "reset",
    ]
