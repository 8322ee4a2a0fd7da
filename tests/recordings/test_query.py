"""The query language: parsing into a tree and compiling to quoted FTS5 expressions."""

from __future__ import annotations

import re

import pytest

from recordings.index.query import (
    MAX_QUERY_CHARS,
    And,
    Not,
    Or,
    QueryError,
    Term,
    parse_query,
    positive_terms,
    to_fts5,
)


def fts(q: str) -> str:
    return to_fts5(parse_query(q))


def test_words_are_anded_and_quoted() -> None:
    assert parse_query("résilier contrat") == And(Term("résilier"), Term("contrat"))
    assert fts("résilier contrat") == '("résilier" AND "contrat")'


def test_phrase_prefix_and_operators() -> None:
    assert parse_query('"mon contrat"') == Term("mon contrat", phrase=True)
    assert fts("rembours*") == '"rembours"*'
    assert fts('"mon contr"*') == '"mon contr"*'
    assert fts("a OR b") == '("a" OR "b")'
    assert fts("contrat NOT résilier") == '("contrat" NOT "résilier")'
    assert fts("contrat AND NOT résilier") == '("contrat" NOT "résilier")'


def test_precedence_and_parentheses() -> None:
    # AND binds tighter than OR, as in FTS5 and most search boxes
    assert parse_query("a b OR c") == Or(And(Term("a"), Term("b")), Term("c"))
    assert parse_query("a (b OR c)") == And(Term("a"), Or(Term("b"), Term("c")))
    assert parse_query("(a OR b) NOT c") == Not(Or(Term("a"), Term("b")), Term("c"))
    assert fts("(a OR b) NOT c") == '(("a" OR "b") NOT "c")'


def test_fts_syntax_typed_by_a_user_is_only_words() -> None:
    # column filters, NEAR, ^ and lower-case operators are words, never FTS5 syntax
    assert fts("text:secret") == '"text:secret"'
    assert fts("NEAR(a b)") == '("NEAR" AND ("a" AND "b"))'
    assert fts("^début") == '"^début"'
    assert fts("a or b") == '(("a" AND "or") AND "b")'
    assert fts('say "a ""b"') == '(("say" AND "a") AND "b")'


def test_punctuation_only_words_are_dropped() -> None:
    assert fts("' contrat ;") == '"contrat"'
    assert fts("x' OR '1'='1") == "(\"x'\" OR \"'1'='1\")"


def test_positive_terms_skip_negated_ones() -> None:
    assert positive_terms(parse_query("a (b OR c) NOT d")) == [Term("a"), Term("b"), Term("c")]


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ('"mon contrat', "unbalanced quote"),
        ('"', "unbalanced quote"),
        ('""', "empty phrase"),
        ("AND", "needs a word"),
        ("contrat OR", "ends where a word"),
        ("OR contrat", "needs a word"),
        ("NOT contrat", "NOT needs a word before it"),
        ("a AND AND b", "needs a word"),
        ("(a OR b", "'(' without ')'"),
        ("a OR b)", "')' without '('"),
        ("()", "parentheses"),
        ("a*b", "'*' may only end a word"),
        ("r*", "at least 2 letters"),
        ("   ", "empty query"),
        ("' ; --", "empty query"),
        ("x" * (MAX_QUERY_CHARS + 1), "longer than"),
        ("a " * 40, "more than 32"),
        ("(" * 9 + "a" + ")" * 9, "nested deeper"),
        ("a\x00b", "NUL"),
    ],
)
def test_malformed_queries_raise_with_a_reason(query: str, reason: str) -> None:
    with pytest.raises(QueryError, match=re.escape(reason)):
        parse_query(query)
