"""The dissemination target-path template (Host Directory field): placeholders, choice, errors."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from bus.errors import ConfigurationError
from bus.templates.directory import RenderContext, parse
from bus.templates.lexer import TemplateError

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
ARRIVED = datetime(2026, 1, 1, tzinfo=UTC)


def context(**changes: object) -> RenderContext:
    """A transfer of ``oper/fc.grib`` to ``archive`` through host ``ftp1``."""
    base = RenderContext(
        now=NOW,
        host_name="ftp1",
        host_host="ftp.example.org",
        host_login="ecpds",
        host_nickname="primary",
        host_comment="main ftp",
        host_user_mail="ops@example.org",
        host_network_code="I",
        host_network_name="Internet",
        data_file_id="42",
        data_file_original="/store/fc.grib",
        data_file_source="/source/fc.grib",
        data_file_size=1536,
        data_file_checksum="d41d8cd98f00b204e9800998ecf8427e",
        data_file_time_step="12",
        data_file_arrived_time=ARRIVED,
        data_file_meta_stream="oper",
        data_file_meta_time="00",
        transfer_id="7",
        transfer_target="oper/fc.grib",
        transfer_comment="first",
        transfer_identity="id-7",
        transfer_priority=5,
        transfer_status="Queued",
        destination_name="archive",
        destination_comment="the archive",
        destination_user_mail="dest@example.org",
        country_name="France",
        country_iso="fr",
        transfer_group_name="continental",
        transfer_group_comment="EU movers",
        mover_name="mover-1",
        metadata={"targetdir": "incoming", "class": "od"},
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def render(template: str, **changes: object) -> str:
    """Parse ``template`` and render it for ``context(**changes)``."""
    return parse(template).render(context(**changes))


@pytest.mark.parametrize(
    ("placeholder", "expected"),
    [
        ("$host[name]", "ftp1"),
        ("$host[host]", "ftp.example.org"),
        ("$host[login]", "ecpds"),
        ("$host[nickname]", "primary"),
        ("$host[comment]", "main ftp"),
        ("$host[userMail]", "ops@example.org"),
        ("$host[networkCode]", "I"),
        ("$host[networkName]", "Internet"),
        ("$dataFile[id]", "42"),
        ("$dataFile[original]", "/store/fc.grib"),
        ("$dataFile[source]", "/source/fc.grib"),
        ("$dataFile[size]", "1536"),
        ("$dataFile[formatSize]", "1.5 Kbytes"),
        ("$dataFile[checksum]", "d41d8cd98f00b204e9800998ecf8427e"),
        ("$dataFile[timeStep]", "12"),
        ("$dataFile[arrivedTime]", str(int(ARRIVED.timestamp() * 1000))),
        ("$dataFile[metaStream]", "oper"),
        ("$dataFile[metaTime]", "00"),
        ("$dataTransfer[id]", "7"),
        ("$dataTransfer[target]", "oper/fc.grib"),
        ("$dataTransfer[name]", "fc.grib"),
        ("$dataTransfer[path]", "oper/fc.grib"),
        ("$dataTransfer[parent]", "oper"),
        ("$dataTransfer[priority]", "5"),
        ("$dataTransfer[identity]", "id-7"),
        ("$dataTransfer[comment]", "first"),
        ("$dataTransfer[statusCode]", "Queued"),
        ("$dataTransfer[asap]", "false"),
        ("$destination[name]", "archive"),
        ("$destination[comment]", "the archive"),
        ("$destination[userMail]", "dest@example.org"),
        ("$country[name]", "France"),
        ("$country[iso]", "fr"),
        ("$transferGroup[name]", "continental"),
        ("$transferGroup[comment]", "EU movers"),
        ("$moverName", "mover-1"),
        ("$metadata[targetdir]", "incoming"),
        ("$date", "20260102"),
        ("$date[yyyy-MM-dd'T'HHmm]", "2026-01-02T0304"),
        ("$date[dateformat=yyyyMMdd,datedelta=-2]", "20251231"),
        ("$$destination[name]", "archive"),
    ],
)
def test_every_placeholder_renders_its_field(placeholder: str, expected: str) -> None:
    """Each placeholder family and field renders the matching value of the render context."""
    assert render(f"/x/{placeholder}/f") == f"/x/{expected}/f".replace("//", "/")


def test_secrets_never_render() -> None:
    """``$host[passwd]`` and ``$host[data]`` render empty: secrets never go into paths."""
    assert render("/a/$host[passwd]$host[data]/b") == "/a/b"


def test_unknown_metadata_is_removed() -> None:
    """A ``$metadata[key]`` with no such key on the data file renders as nothing."""
    assert render("/in/$metadata[nope]/$metadata[class]/x") == "/in/od/x"


def test_trailing_slash_appends_the_target() -> None:
    """A path ending with ``/`` gets the transfer's target (with its sub-directories) appended."""
    assert render("/home/$destination[name]/") == "/home/archive/oper/fc.grib"


def test_empty_template_and_empty_result_give_the_target() -> None:
    """An empty template, or a path that renders empty, is the transfer's target itself."""
    assert render("") == "oper/fc.grib"
    assert render("$metadata[missing]") == "oper/fc.grib"


def test_slashes_are_collapsed() -> None:
    """Runs of ``/`` (from empty values or the appended target) collapse to one."""
    assert render("//a///$metadata[none]//", transfer_target="/b//c") == "/a/b/c"


def test_values_cannot_inject_conditions() -> None:
    """A value holding ``)`` or an operator is data: it cannot change the line chosen."""
    template = "/default/\n($metadata[x]==a) /chosen/"
    assert render(template, metadata={"x": "b) /evil/ (c==c"}) == "/default/oper/fc.grib"


@pytest.mark.parametrize(
    ("condition", "matches"),
    [
        ("$destination[name]==archive", True),
        ("$destination[name]==other", False),
        ("$dataTransfer[target]=={oper/.*\\.grib}", True),
        ("$dataTransfer[target]=={.*\\.bufr}", False),
        ("$dataTransfer[target]=={oper}", False),
        ("$destination[name]!=other", True),
        ("$destination[name]!=archive", False),
        ("$dataTransfer[target].=oper/", True),
        ("$dataTransfer[target].=fc", False),
        ("$dataTransfer[target]=..grib", True),
        ("$dataTransfer[target]=..bufr", False),
        (" $host[name] == ftp1 ", True),
    ],
)
def test_each_operator(condition: str, matches: bool) -> None:
    """``==`` (regex full match with ``{}``), ``!=``, ``.=`` and ``=.`` compare rendered sides."""
    expected = "/yes/oper/fc.grib" if matches else "/no/oper/fc.grib"
    assert render(f"/no/\n({condition}) /yes/") == expected


def test_most_matched_conditions_win() -> None:
    """Of several matching lines, the one matching the most conditions is chosen."""
    template = "\n".join(
        [
            "/default/",
            "($destination[name]==archive) /one/",
            "($destination[name]==archive;$host[name]==ftp1) /two/",
            "($destination[name]==x,$host[name]==ftp1,$country[iso]==de) /partial/",
        ]
    )
    assert render(template) == "/two/oper/fc.grib"
    assert render(template, destination_name="x", country_iso="de") == "/partial/oper/fc.grib"


def test_partial_matches_score() -> None:
    """A line counts each matching condition, so a partial match beats the default."""
    template = "/default/\n($host[name]==ftp1;$country[iso]==de) /partial/"
    assert render(template) == "/partial/oper/fc.grib"


@pytest.mark.parametrize(
    "separated",
    [
        "($destination[name]==archive)($host[name]==ftp1) /two/",
        "($destination[name]==archive && $host[name]==ftp1) /two/",
        "($destination[name]==archive) ($host[name]==ftp1) /two/",
    ],
)
def test_condition_groups_and_ampersands(separated: str) -> None:
    """Conditions may also be written as several groups or joined with ``&&``."""
    template = f"/default/\n($destination[name]==archive) /one/\n{separated}"
    assert render(template) == "/two/oper/fc.grib"


def test_default_line_when_nothing_matches() -> None:
    """A bare line is used when no conditional line matches any condition."""
    template = "($destination[name]==other) /other/\n/default/$date/"
    assert render(template) == "/default/20260102/oper/fc.grib"


def test_no_match_and_no_default_is_refused() -> None:
    """With no matching line and no default, rendering raises a ``TemplateError``."""
    with pytest.raises(TemplateError, match="no default"):
        render("($destination[name]==other) /other/")


def test_tied_best_score_is_refused() -> None:
    """Two lines with the same best score are ambiguous, as OpenECPDS refuses them."""
    template = "/d/\n($host[name]==ftp1) /a/\n($destination[name]==archive) /b/"
    with pytest.raises(TemplateError) as caught:
        render(template)
    assert caught.value.line == 3
    assert "both match 1" in caught.value.detail


def test_regex_with_parentheses_and_quantifier_braces() -> None:
    """Parentheses, commas and ``{n,m}`` inside a ``{regex}`` do not end the condition."""
    template = "/d/\n($dataTransfer[name]=={(fc|an)\\.g{1}rib}) /r/"
    assert render(template) == "/r/oper/fc.grib"


@pytest.mark.parametrize(
    ("template", "line", "column", "message"),
    [
        ("/a/$unknown[x]", 1, 4, "unknown placeholder $unknown"),
        ("/a/\n  /b/$host[nope]", 2, 12, "unknown field 'nope' of $host"),
        ("/a/$host", 1, 4, "$host needs a field"),
        ("/a/$host[name", 1, 9, "never closed by ']'"),
        ("($host[name]==a /p", 1, 1, "'(' is never closed"),
        ("/d\n($host[name] ~ a) /p", 2, 2, "has no operator"),
        ("(a==b)(c) /p", 1, 8, "has no operator"),
        ("() /p", 1, 1, "empty condition"),
        ("($host[name]=={a[}) /p", 1, 17, "bad regular expression"),
        ("($host[name]=={a) /p", 1, 15, "'{' is never closed"),
        ("/a/$date[yyyyMMddq]", 1, 18, "illegal date pattern character 'q'"),
        ("/a/$date[yyyy'MM]", 1, 14, "unterminated quote"),
        ("/a/$date[datedelta=x]", 1, 20, "bad datedelta"),
        ("/a/$metadata", 1, 4, "$metadata needs a key"),
        ("/a/$moverName[x]", 1, 14, "takes no"),
    ],
)
def test_errors_carry_their_position(template: str, line: int, column: int, message: str) -> None:
    """Each invalid template is refused at parse time with the line and column of the fault."""
    with pytest.raises(TemplateError) as caught:
        parse(template)
    error = caught.value
    assert (error.line, error.column) == (line, column)
    assert message in error.detail
    assert isinstance(error, ConfigurationError)
    assert error.field == "directory"
    assert f"line {line}, column {column}" in str(error)


def test_escapes_and_lone_dollars() -> None:
    """``\\$`` is a literal dollar, and a ``$`` starting no name is kept as it is."""
    assert render("/a/\\$host[name]/$1/") == "/a/$host[name]/$1/oper/fc.grib"


def test_windows_line_endings() -> None:
    """``\\r\\n`` line endings parse like ``\\n``."""
    assert render("/d/\r\n($host[name]==ftp1) /w/\r\n") == "/w/oper/fc.grib"


def test_render_is_pure() -> None:
    """Rendering the same template for the same context twice gives the same path."""
    template = parse("/a/$date[HHmmss]/$dataFile[id]/")
    assert template.render(context()) == template.render(context()) == "/a/030405/42/oper/fc.grib"
