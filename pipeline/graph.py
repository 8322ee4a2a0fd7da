"""Cycles in a small directed graph: the validators of IVR menus and robot scenarios refuse
a loop that never waits for the caller (the call would spin until it is cut)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def cycles(edges: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """Each elementary cycle once, as the path from its first-listed node back to it
    (`[a, b, a]`); only nodes that are keys of `edges` are followed."""
    found: list[list[str]] = []
    done: set[frozenset[str]] = set()
    for start in edges:
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for t in edges.get(node, ()):
                if t == start:
                    if frozenset(path) not in done:
                        done.add(frozenset(path))
                        found.append([*path, t])
                elif t in edges and t not in path:
                    stack.append((t, [*path, t]))
    return found
