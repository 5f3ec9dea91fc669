"""Acquisition hosts are compiled when defined: every bad field or option name is refused by
``config apply``'s validation, named as the operator wrote it, with line and column inside a
template; the examples in ``infra/examples`` and the README's acquisition section pass."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bus.config import KNOWN_SCHEMES
from bus.config import options as known
from bus.config.apply import plan
from bus.config.validate import Problems, validate
from bus.config.view import ConfigView
from bus.config.yamlio import load
from bus.errors import ConfigurationError
from bus.events.config import Destination, DestinationType, Host, HostType
from bus.settings import ROOT
from bus.templates.lexer import TemplateError
from cli.config import config_app


def acquisition_host(directory: str = "/data/{.*}", **options: str) -> Host:
    return Host(
        id="provider",
        nickname="provider",
        type=HostType.ACQUISITION,
        protocol="sftp",
        address="127.0.0.1:22",
        directory=directory,
        options=options,
        polling_frequency_ms=60_000,
    )


def refusal(host: Host) -> ConfigurationError:
    with pytest.raises(ConfigurationError) as caught:
        validate(host)
    return caught.value


# directory, options, field, words in the reason, (line, column) for template errors
BAD: list[tuple[str, dict[str, str], str, str, tuple[int, int] | None]] = [
    ("/d/$date[dateformat=qqqq]/", {}, "host.directory", "illegal date pattern", (1, 21)),
    ("/d/{obs_[0-9+\\.txt}", {}, "host.directory", "regular expression", (1, 9)),
    ("/d/{(obs_.*}", {}, "host.directory", "regular expression", (1, 5)),
    ("/d/$date[yyyy/", {}, "host.directory", "never closed", (1, 9)),
    ("/d/$dat/{.*}", {}, "host.directory", "unknown placeholder $dat", (1, 4)),
    ("$(js:listing())", {}, "host.directory", "nothing is evaluated", (1, 1)),
    ("/d/$date[datedelta=abc]/", {}, "host.directory", "not a day offset", (1, 20)),
    ("/d/$date[datedelta=2..0]/", {}, "host.directory", "runs backwards", (1, 20)),
    ("/d/$date[zone=UTC]/", {}, "host.directory", "unknown $date option", (1, 10)),
    ("/d/$host[password]/", {}, "host.directory", "$host needs one of", (1, 4)),
    ("/d/{obs.*", {}, "host.directory", "never closed", (1, 4)),
    ("/ok/\n[fileage=big]/d/{.*}", {}, "host.directory", "option fileage", (2, 2)),
    ("[dateformat=qq]/d/$date/", {}, "host.directory", "dateformat", (1, 2)),
    ("[stream]/d/", {}, "host.directory", "not key=value", (1, 2)),
    ("/d/", {"acquisition.fileage": ">20 parsecs"}, "host.options.acquisition.fileage",
     "not a duration", (1, 2)),
    ("/d/", {"acquisition.fileage": "$age > 5"}, "host.options.acquisition.fileage",
     "nothing is evaluated", (1, 1)),
    ("/d/", {"acquisition.filesize": "big"}, "host.options.acquisition.filesize",
     "a filter starts with", (1, 1)),
    ("/d/", {"acquisition.filesize": ">= lots"}, "host.options.acquisition.filesize",
     "not a size", (1, 4)),
    ("/d/", {"acquisition.target": "$foo[bar]"}, "host.options.acquisition.target",
     "unknown placeholder $foo", (1, 1)),
    ("/d/", {"acquisition.target": "x/$target[9..2]"}, "host.options.acquisition.target",
     "end is before the start", (1, 11)),
    ("/d/", {"acquisition.metadata": "stream=$nope"}, "host.options.acquisition.metadata",
     "unknown placeholder $nope", (1, 8)),
    ("/d/", {"acquisition.dateformat": "yyyyQQ"}, "host.options.acquisition.dateformat",
     "illegal date pattern", (1, 5)),
    ("/d/", {"acquisition.datedelta": "yesterday"}, "host.options.acquisition.datedelta",
     "not a day offset", None),
    ("/d/", {"acquisition.priority": "high"}, "host.options.acquisition.priority",
     "whole number", None),
    ("/d/", {"acquisition.priority": "150"}, "host.options.acquisition.priority",
     "from 0 to 99", None),
    ("/d/", {"acquisition.lifetime": "forever"}, "host.options.acquisition.lifetime",
     "not a duration", None),
    ("/d/", {"acquisition.useSymlink": "ye"}, "host.options.acquisition.useSymlink",
     "yes or no", None),
    ("/d/", {"acquisition.requeueonupdate": "sometimes"},
     "host.options.acquisition.requeueonupdate", "yes or no", None),
    ("/d/", {"acquisition.maximumDuration": "long"}, "host.options.acquisition.maximumDuration",
     "not a duration", None),
    ("/d/", {"sftp.connectTimeOut": "soon"}, "host.options.sftp.connectTimeOut",
     "not a duration", None),
    ("/d/", {"sftp.maxRequests": "many"}, "host.options.sftp.maxRequests", "whole number", None),
    ("/d/", {"ectrans.usetmp": "maybe"}, "host.options.ectrans.usetmp", "yes or no", None),
    ("/d/", {"upload.rateThrottling": "fast"}, "host.options.upload.rateThrottling",
     "byte rate", None),
]  # fmt: skip


@pytest.mark.parametrize(("directory", "options", "field", "words", "position"), BAD)
def test_bad_acquisition_fields_are_refused_at_definition(
    directory: str,
    options: dict[str, str],
    field: str,
    words: str,
    position: tuple[int, int] | None,
) -> None:
    """Each bad Directory line, filter, template, number or flag of an acquisition host is
    refused when the host is validated, naming the field and, in a template, line and column."""
    error = refusal(acquisition_host(directory, **options))
    assert error.field == field
    assert words in error.reason
    assert "invalid literal" not in error.reason
    if position is not None:
        assert isinstance(error, TemplateError)
        assert (error.line, error.column) == position


@pytest.mark.parametrize(
    ("options", "field", "suggested"),
    [
        ({"acquisition.fileagee": "<1d"}, "host.options.acquisition.fileagee",
         "did you mean acquisition.fileage?"),
        ({"acquisition.requeueOnFailur": "yes"}, "host.options.acquisition.requeueOnFailur",
         "did you mean acquisition.requeueOnFailure?"),
        ({"sftp.knownhosts": "/etc/ssh/known"}, "host.options.sftp.knownhosts",
         "did you mean sftp.knownHosts?"),
        ({"sftp.fingerprint": "SHA256:x"}, "host.options.sftp.fingerprint",
         "did you mean sftp.fingerPrint?"),
        ({"ectrans.usetemp": "no"}, "host.options.ectrans.usetemp",
         "did you mean ectrans.usetmp?"),
        ({"connectTimeout": "5s"}, "host.options.connectTimeout",
         "did you mean connectTimeOut?"),
        ({"ftp.passive": "yes"}, "host.options.ftp.passive",
         "for ftp/ftps hosts, this one is sftp"),
        ({"retrieval.minimumRate": "1MB"}, "host.options.retrieval.minimumRate",
         "sftp hosts take sftp.*"),
    ],
)  # fmt: skip
def test_unknown_option_names_are_refused_with_the_closest_one(
    options: dict[str, str], field: str, suggested: str
) -> None:
    """An option name nothing reads (a misspelling would silently turn its protection off) is
    refused, with the closest known name or what such a host takes."""
    error = refusal(acquisition_host(**options))
    assert error.field == field
    assert suggested in error.reason


def test_two_requeue_rules_are_refused() -> None:
    """Two requeue rules at once would be a silent choice of one: refused, naming both."""
    error = refusal(
        acquisition_host(
            **{"acquisition.requeueonsamesize": "yes", "acquisition.requeueonupdate": "no"}
        )
    )
    assert error.field == "host.options.acquisition.requeueonupdate"
    assert "requeueonsamesize=yes and acquisition.requeueonupdate=no" in error.reason
    validate(acquisition_host(**{"acquisition.requeueonsamesize": "yes"}))


def test_a_template_error_in_a_block_scalar_gives_the_file_line_of_its_own_line() -> None:
    """A Directory written as a ``|`` block: the file line is the bad listing line's."""
    text = (
        "hosts:\n"
        "  - id: p\n    nickname: p\n    type: acquisition\n    protocol: sftp\n"
        "    address: x\n    polling_frequency: 1m\n"
        "    directory: |\n"
        "      /ok/{.*}\n"
        "      /bad/$dat/\n"
    )
    with pytest.raises(TemplateError) as caught:
        load(text)
    assert caught.value.field == "hosts[0].directory"
    assert (caught.value.line, caught.value.column) == (2, 6)
    assert caught.value.reason.endswith("(host p, file line 10)")


def test_misspelt_line_option_is_refused_with_its_suggestion() -> None:
    """A ``[key=value]`` option of a listing line is held to the same names."""
    error = refusal(acquisition_host("/a/\n  [fileagee=>=1m]/b/{.*}"))
    assert isinstance(error, TemplateError)
    assert error.field == "host.directory"
    assert (error.line, error.column) == (2, 4)
    assert "did you mean fileage?" in error.reason


def test_options_of_other_hosts_are_refused_where_they_mean_nothing() -> None:
    """Acquisition options on a dissemination host and unknown destination properties are
    refused: nothing would read them."""
    dissemination = Host(
        id="out",
        nickname="out",
        type=HostType.DISSEMINATION,
        protocol="ftp",
        address="x",
        options={"acquisition.fileage": ">=1m", "ftp.mkdir": "yes"},
    )
    with pytest.raises(Problems) as caught:
        validate(dissemination)
    fields = {p.field: p.reason for p in caught.value.problems}
    assert "acquisition hosts only" in fields["host.options.acquisition.fileage"]
    assert "did you mean ftp.mkdirs?" in fields["host.options.ftp.mkdir"]
    destination = Destination(
        name="d",
        type=DestinationType.DISSEMINATION,
        transfer_group="default",
        properties={"scheduler.requeueOn": "$time1 > $time2"},
    )
    with pytest.raises(ConfigurationError) as error:
        validate(destination)
    assert error.value.field == "destination.properties.scheduler.requeueOn"
    assert "did you mean scheduler.requeueon?" in error.value.reason


def test_a_host_using_every_acquisition_option_is_accepted() -> None:
    """Good values of every acquisition option, line options and WIS2 filters pass."""
    good = {
        "dateformat": "yyyy-MM-dd",
        "datedelta": "-2..0",
        "filesize": ">=1KB",
        "fileage": ">=2m",
        "target": "$date[yyyy]/$target[2..12]",
        "metadata": "stream=oper,date=$date[dateformat=yyyyMMdd,datedelta=-1]",
        "priority": "10",
        "lifetime": "2d",
        "maximumDuration": "5m",
        "retrievalMaximumDuration": "PT10M",
        "stableInterval": "30s",
        "companion": ".done",
    }
    flags = {o.name: "yes" for o in known.ACQUISITION if o.check is known.flag}
    flags |= {"uniqueByNameAndTime": "no", "requeueonsamesize": "no"}  # one requeue rule
    options = {f"acquisition.{k}": v for k, v in (good | flags).items()}
    assert {k.removeprefix("acquisition.") for k in options} == {o.name for o in known.ACQUISITION}
    directory = (
        "# products\n"
        "[dirdateformat=yyyy/MM;dirdatedelta=-1;FileAge=>=5m]/in/$dirdate/{obs_$date\\d+}\n"
        "/in/$host[name]/$date[yyyyMMdd]/{[A-Z]{4}.*}\n"
    )
    validate(acquisition_host(directory, **options, **{"sftp.fingerPrint": "SHA256:x"}))
    wis2 = Host(
        id="gb",
        nickname="gb",
        type=HostType.ACQUISITION,
        protocol="http",
        address="broker:1883",
        directory="cache/a/wis2/+/data/core/#\n# a comment\n",
        options={"http.mqttMode": "yes", "http.mqttQos": "1"},
    )
    validate(wis2)


def test_a_bad_wis2_topic_filter_is_refused() -> None:
    """A WIS2 host's lines are MQTT topic filters: ``#`` only as the last level."""
    wis2 = Host(
        id="gb",
        nickname="gb",
        type=HostType.ACQUISITION,
        protocol="http",
        address="broker:1883",
        directory="cache/a/#/data",
        options={"http.mqttMode": "yes"},
    )
    error = refusal(wis2)
    assert isinstance(error, TemplateError)
    assert error.field == "host.directory"
    assert (error.line, error.column) == (1, 9)


BAD_FILE = """
hosts:
  - id: provider
    nickname: Provider
    type: acquisition
    protocol: sftp
    address: 127.0.0.1:22
    directory: /data/$date[dateformat=qqqq]/{obs_.*}
    retry_frequency: soon
    max_connections: many
    options:
      acquisition.fileagee: "<1d"
      acquisition.filesize: big
  - id: second
    type: dissemination
    protocol: ftp
    adress: x
destinations:
  - name: d
    type: dissemination
    transfer_group: default
    max_connections: 0
    retry_frequency_ms: 0
    mqtt: {publish: true, expiry_interval: 0s}
planets: []
"""


def test_a_file_with_several_problems_reports_every_one_in_its_own_words() -> None:
    """Every problem of a file is reported at once, each named by its place in the file as the
    operator wrote it and its line, never with a Python name or message."""
    with pytest.raises(Problems) as caught:
        load(BAD_FILE)
    found = {p.field: p.reason for p in caught.value.problems}
    assert set(found) == {
        "document.planets",
        "hosts[0].directory",
        "hosts[0].retry_frequency",
        "hosts[0].max_connections",
        "hosts[0].polling_frequency",
        "hosts[0].options.acquisition.fileagee",
        "hosts[0].options.acquisition.filesize",
        "hosts[1].nickname",
        "hosts[1].address",
        "hosts[1].adress",
        "destinations[0].max_connections",
        "destinations[0].retry_frequency_ms",  # written with _ms: named so
        "destinations[0].mqtt.expiry_interval",
    }
    assert "did you mean address?" in found["hosts[1].adress"]
    assert "line 1, column 24" in found["hosts[0].directory"]
    # and where in the file: the key's line, or the item's when the key is missing
    assert found["hosts[1].nickname"] == "required (host second, file line 14)"
    assert found["hosts[0].directory"].endswith("(host provider, file line 8)")
    assert found["hosts[0].options.acquisition.fileagee"].endswith("file line 12)")
    for reason in found.values():
        assert "__init__" not in reason
        assert "invalid literal" not in reason
        assert "_ms" not in reason


def test_config_check_prints_every_problem_and_exits_2(tmp_path: Path) -> None:
    """``ecpds config check`` (no broker) lists each problem of the file on its own line."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD_FILE)
    result = CliRunner().invoke(config_app, ["check", "-f", str(bad)], env={"COLUMNS": "300"})
    assert result.exit_code == 2, result.output
    assert "refused: 13 problems" in result.output
    assert "hosts[0].options.acquisition.fileagee: unknown acquisition option; did you mean" in (
        result.output
    )
    assert "hosts[0].retry_frequency: expected a duration" in result.output
    good = CliRunner().invoke(
        config_app, ["check", "-f", str(ROOT / "infra" / "examples" / "acquisition.yaml")]
    )
    assert good.exit_code == 0, good.output
    assert "valid" in good.output


EXAMPLES = sorted((ROOT / "infra" / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_is_accepted(path: Path) -> None:
    """Each file in infra/examples passes what ``config apply`` checks before publishing."""
    document = load(path.read_text())
    assert plan(ConfigView(), document.entities)


def test_there_is_an_acquisition_example() -> None:
    """infra/examples has an acquisition host to start from."""
    names = {p.name for p in EXAMPLES}
    assert "acquisition.yaml" in names
    document = load((ROOT / "infra" / "examples" / "acquisition.yaml").read_text())
    assert any(isinstance(e, Host) and e.type is HostType.ACQUISITION for e in document.entities)


def _acquisition_section() -> str:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("\n## Acquisition\n")
    return readme[start : readme.index("\n## ", start + 1)]


def test_readme_acquisition_examples_are_accepted() -> None:
    """Every YAML example of the README's acquisition section passes validation, one per
    protocol family (SFTP, FTP, HTTP, S3, WIS2)."""
    blocks = re.findall(r"```yaml\n(.*?)```", _acquisition_section(), re.DOTALL)
    protocols = set()
    for block in blocks:
        document = load(block)
        assert plan(ConfigView(), document.entities)
        protocols |= {
            e.protocol + ("+mqtt" if "http.mqttMode" in e.options else "")
            for e in document.entities
            if isinstance(e, Host)
        }
    assert {"sftp", "ftp", "https", "s3", "http+mqtt"} <= protocols


def test_readme_lists_every_acquisition_option() -> None:
    """The README's option reference is the table the validator holds names against."""
    assert known.reference() in _acquisition_section()


# what protocols/ read: location.option("x"), location.flag("x"), mib_option(location, "x")
_READ = re.compile(r"(?:\.option|\.flag|mib_option|int_option)\((?:\w+(?:\.\w+)?, )?\"(\w+)\"")
_READERS = {
    "ftp.py": ("ftp",),
    "sftp.py": ("sftp",),
    "http.py": ("http",),
    "s3.py": ("s3",),
    "azure.py": ("azure",),
    "gcs.py": ("gcs",),
    "file.py": ("file",),
    "memory.py": ("memory",),
    "objectstore.py": ("s3", "azure", "gcs"),
    "base.py": tuple(known.MODULES),
}


@pytest.mark.parametrize("module_file", sorted(_READERS))
def test_known_module_options_are_what_the_modules_read(module_file: str) -> None:
    """Every option a transfer module reads is a known option of that module (else a host
    using it would be refused)."""
    source = (ROOT / "protocols" / module_file).read_text()
    read = set(_READ.findall(source))
    assert read or module_file == "memory.py"
    for module in _READERS[module_file]:
        takes = {*known.COMMON, *known.MODULES[module]}
        assert read <= takes, f"{module} reads {sorted(read - takes)}"


def test_known_acquisition_options_are_what_the_stage_reads() -> None:
    """Every option the acquisition stage parses is a known acquisition option."""
    source = (ROOT / "producers" / "acquisition" / "core.py").read_text()
    read = set(re.findall(r"flag\(\"(\w+)\"", source))
    read |= set(re.findall(r"o(?:\.get\(|\[)\"(\w+)\"", source))
    assert read
    assert {r.lower() for r in read} <= {o.name.lower() for o in known.ACQUISITION}
    wis2 = (ROOT / "producers" / "acquisition" / "wis2.py").read_text()
    for key in re.findall(r"\"(http\.\w+)\"", wis2):
        known.host_option("http", key, acquisition=True)


def test_module_prefixes_follow_the_modules() -> None:
    """Each protocol's module and option prefixes are those ``protocols.location`` strips."""
    from protocols.location import MODULE_PREFIXES

    assert set(known.SCHEME_MODULES) == set(KNOWN_SCHEMES)
    assert {s: p for s, (_, p) in known.SCHEME_MODULES.items()} == dict(MODULE_PREFIXES)
