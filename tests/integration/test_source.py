# SPDX-License-Identifier: LGPL-2.1-or-later
"""The shape of the source tree: no two modules (NAME.c with NAME.h, and
its private NAME-internal.h) depend on each other, directly or around a loop. meson.build already
fails an upward #include between layers; this catches a loop inside a
layer, such as vm.c and a driver calling into each other."""

import os
import re

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DIRS = ["vmd", "vmd/base", "vmd/model", "vmd/driver", "net", "share", "images"]


def module(path):
    name = os.path.splitext(os.path.basename(path))[0]
    return name[:-len("-internal")] if name.endswith("-internal") else name


def module_graph():
    files = [os.path.join(d, f) for d in DIRS for f in os.listdir(os.path.join(TOP, d))
             if f.endswith((".c", ".h"))]
    headers = {os.path.basename(f) for f in files if f.endswith(".h")}
    graph = {}
    for f in files:
        mod = module(f)
        deps = graph.setdefault(mod, set())
        for line in open(os.path.join(TOP, f)):
            m = re.match(r'#include "([^"]+)"', line)
            if m and m.group(1) in headers and module(m.group(1)) != mod:
                deps.add(module(m.group(1)))
    return graph


def cycles(graph):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_module_cycles():
    assert cycles(module_graph()) == []


def test_cycle_finder_finds_one():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
