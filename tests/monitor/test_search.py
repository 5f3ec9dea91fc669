"""The monitor's search syntax (OpenECPDS's ``name=AB? enabled=yes`` and ``target=*.grib
size>=700kb``), pure: parsing, globs, sizes, and the refusals an operator reads."""

from __future__ import annotations

import re

import pytest

from projections.monitor.search import (
    DESTINATION_FIELDS,
    TRANSFER_FIELDS,
    SearchError,
    Term,
    glob_to_like,
    parse,
    size_of,
    where,
)


def test_terms_free_words_and_case_are_told_apart() -> None:
    """``field op value`` parts are terms, ``case=i`` a switch, anything else a free word."""
    query = parse('name=AB? enabled=yes "comment=*two words*" paris size>=700kb case=i')
    assert query.terms == (
        Term("name", "=", "AB?"),
        Term("enabled", "=", "yes"),
        Term("comment", "=", "*two words*"),
        Term("size", ">=", "700kb"),
    )
    assert query.words == ("paris",)
    assert query.ignore_case


@pytest.mark.parametrize(
    ("glob", "like"),
    [("AB?", "AB_"), ("*.grib", "%.grib"), ("50%_off", "50\\%\\_off"), ("a\\b", "a\\\\b")],
)
def test_globs_become_like_patterns_with_like_wildcards_escaped(glob: str, like: str) -> None:
    """``*`` and ``?`` are the only wildcards: LIKE's own ``%`` and ``_`` match themselves."""
    assert glob_to_like(glob) == like


@pytest.mark.parametrize(
    ("text", "size"), [("700kb", 716_800), ("2mb", 2 << 20), ("1.5k", 1536), ("42", 42)]
)
def test_sizes_read_1024_based_units(text: str, size: int) -> None:
    """``700kb`` is 700 KiB, as OpenECPDS reads it."""
    assert size_of(text) == size


def test_terms_become_constant_sql_with_values_as_parameters() -> None:
    """Each term is a fixed fragment; its value only ever a parameter."""
    clauses, params = where(
        parse("target=*.grib size>=700kb status=fail,stop expired=no case=i"), TRANSFER_FIELDS
    )
    assert clauses == [
        "(coalesce(target, '') ILIKE %s)",
        "(size >= %s)",
        "(coalesce(status, '') = ANY(%s))",
        "(coalesce((expiry_time < now()), false) = %s)",
    ]
    assert params == ["%.grib", 716_800, ["FAIL", "STOP"], False]


@pytest.mark.parametrize(
    ("query", "said"),
    [
        ("colour=red", "unknown field 'colour': search by comment, country"),
        ("name>3", "'name' takes = or != (with * and ?), not >"),
        ("enabled=perhaps", "'perhaps' is not yes or no"),
        ("queued>=many", "'many' is not a whole number"),
        ('name="open', "cannot read the query"),
    ],
)
def test_what_cannot_be_read_is_refused_with_a_sentence(query: str, said: str) -> None:
    """An unknown field, a wrong operator or an unreadable value is refused, named."""
    with pytest.raises(SearchError, match=re.escape(said)):
        where(parse(query), DESTINATION_FIELDS)


def test_a_bad_size_is_refused() -> None:
    """A size the units do not cover says how to write one."""
    with pytest.raises(SearchError, match="not a size"):
        size_of("lots")
