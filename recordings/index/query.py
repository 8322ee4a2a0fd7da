"""The analysts' query language, parsed into a tree, compiled to a safe FTS5 expression.

Language: words (implicit AND), "exact phrases", AND, OR, NOT (upper case), prefix*
and parentheses. User text never reaches FTS5 as syntax: every word or phrase is
re-emitted as a double-quoted FTS5 string, so column filters, NEAR or `^` typed by a
user are only ever words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_QUERY_CHARS = 512
MAX_TERMS = 32
MAX_DEPTH = 8
MIN_PREFIX_CHARS = 2

_OPERATORS = {"AND", "OR", "NOT"}
_WORD = re.compile(r"\w", re.UNICODE)
_TOKEN = re.compile(r'\s+|"[^"]*"?\*?|\(|\)|[^\s()"]+')


class QueryError(ValueError):
    """A query the parser refuses; the message is the reason shown to the user (HTTP 400)."""


@dataclass(frozen=True)
class Term:
    """A word or "phrase"; `prefix` makes its last word match as a prefix."""

    text: str
    phrase: bool = False
    prefix: bool = False


@dataclass(frozen=True)
class And:
    """Both sides match."""

    left: Node
    right: Node


@dataclass(frozen=True)
class Or:
    """Either side matches."""

    left: Node
    right: Node


@dataclass(frozen=True)
class Not:
    """`left` matches and `right` does not (FTS5 has only binary NOT)."""

    left: Node
    right: Node


Node = Term | And | Or | Not


@dataclass(frozen=True)
class _Tok:
    kind: str  # word, phrase, op, lparen, rparen
    text: str
    prefix: bool = False


def _lex(q: str) -> list[_Tok]:
    toks: list[_Tok] = []
    for m in _TOKEN.finditer(q):
        s = m.group(0)
        if s.isspace():
            continue
        if s == "(":
            toks.append(_Tok("lparen", s))
        elif s == ")":
            toks.append(_Tok("rparen", s))
        elif s.startswith('"'):
            prefix = s.endswith("*") and len(s) > 1
            body = s[:-1] if prefix else s
            if len(body) < 2 or not body.endswith('"'):
                raise QueryError('unbalanced quote: every " must be closed')
            toks.append(_Tok("phrase", body[1:-1], prefix))
        elif s in _OPERATORS:
            toks.append(_Tok("op", s))
        else:
            prefix = s.endswith("*")
            word = s.rstrip("*")
            if "*" in word:
                raise QueryError(f"'*' may only end a word (in {s!r})")
            if not _WORD.search(word):
                continue  # punctuation alone carries nothing to search for
            toks.append(_Tok("word", word, prefix))
    return toks


class _Parser:
    def __init__(self, toks: list[_Tok]) -> None:
        self.toks = toks
        self.i = 0
        self.terms = 0

    def peek(self) -> _Tok | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def parse(self) -> Node:
        node = self.or_expr(0)
        tok = self.peek()
        if tok is not None:
            if tok.kind == "rparen":
                raise QueryError("unbalanced parentheses: ')' without '('")
            raise QueryError(f"unexpected {tok.text!r}")  # pragma: no cover - defensive
        return node

    def or_expr(self, depth: int) -> Node:
        node = self.and_expr(depth)
        while (tok := self.peek()) is not None and tok.kind == "op" and tok.text == "OR":
            self.take()
            node = Or(node, self.and_expr(depth))
        return node

    def and_expr(self, depth: int) -> Node:
        node = self.primary(depth)
        while (tok := self.peek()) is not None and tok.kind != "rparen":
            if tok.kind == "op" and tok.text == "OR":
                break
            negate = False
            if tok.kind == "op" and tok.text == "AND":
                self.take()
                tok = self.peek()
            if tok is not None and tok.kind == "op" and tok.text == "NOT":
                self.take()
                negate = True
            right = self.primary(depth)
            node = Not(node, right) if negate else And(node, right)
        return node

    def primary(self, depth: int) -> Node:
        tok = self.peek()
        if tok is None:
            raise QueryError("the query ends where a word was expected")
        if tok.kind == "op":
            if tok.text == "NOT":
                raise QueryError("NOT needs a word before it, as in: contrat NOT résilier")
            raise QueryError(f"{tok.text} needs a word on both sides")
        if tok.kind == "rparen":
            raise QueryError("empty or unbalanced parentheses")
        self.take()
        if tok.kind == "lparen":
            if depth >= MAX_DEPTH:
                raise QueryError(f"parentheses nested deeper than {MAX_DEPTH}")
            node = self.or_expr(depth + 1)
            close = self.peek()
            if close is None or close.kind != "rparen":
                raise QueryError("unbalanced parentheses: '(' without ')'")
            self.take()
            return node
        self.terms += 1
        if self.terms > MAX_TERMS:
            raise QueryError(f"more than {MAX_TERMS} words or phrases")
        if tok.kind == "phrase":
            words = _WORD.findall(tok.text)
            if not words:
                raise QueryError('an empty phrase ("") matches nothing')
            if tok.prefix:
                _check_prefix(tok.text)
            return Term(" ".join(tok.text.split()), phrase=True, prefix=tok.prefix)
        if tok.prefix:
            _check_prefix(tok.text)
        return Term(tok.text, prefix=tok.prefix)


def _check_prefix(text: str) -> None:
    last = re.findall(r"\w+", text)[-1]
    if len(last) < MIN_PREFIX_CHARS:
        raise QueryError(f"a prefix needs at least {MIN_PREFIX_CHARS} letters before '*'")


def parse_query(q: str) -> Node:
    """Parse the user's query; raises QueryError with the reason when it is malformed."""
    if len(q) > MAX_QUERY_CHARS:
        raise QueryError(f"query longer than {MAX_QUERY_CHARS} characters")
    if "\x00" in q:
        raise QueryError("query holds a NUL character")
    toks = _lex(q)
    if not toks:
        raise QueryError("empty query: type at least one word")
    return _Parser(toks).parse()


def _fts_string(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def to_fts5(node: Node) -> str:
    """The FTS5 MATCH expression of a parsed query (every user word quoted)."""
    if isinstance(node, Term):
        return _fts_string(node.text) + ("*" if node.prefix else "")
    op = {And: "AND", Or: "OR", Not: "NOT"}[type(node)]
    return f"({to_fts5(node.left)} {op} {to_fts5(node.right)})"


def positive_terms(node: Node) -> list[Term]:
    """Terms that must or may match (not those under NOT): what a snippet highlights."""
    if isinstance(node, Term):
        return [node]
    if isinstance(node, Not):
        return positive_terms(node.left)
    return positive_terms(node.left) + positive_terms(node.right)
