#!/usr/bin/env python3
"""The tree's shape, checked (ARCHITECTURE.md, "Rules the tree keeps"):
no import circles between a crate's source files, and no source file over
MAX_LINES lines before its test module. Exits 1 naming what breaks a rule.

A file uses another when it names it in a `use` or a path (`crate::a::b`,
`super::X`, `child::Y`); a parent's `pub use child::...` re-export is its
outline, not a use, unless the parent itself names what it re-exports."""
import os, re, sys
root = sys.argv[1] if len(sys.argv) > 1 else 'crates'
MAX_LINES = 520
broken = []
def modname(src, path):
    rel = os.path.relpath(path, src)[:-3]
    parts = rel.split(os.sep)
    if parts[-1] in ('mod', 'lib', 'main'): parts = parts[:-1]
    return '::'.join(parts)
for crate in sorted(os.listdir(root)):
    src = os.path.join(root, crate, 'src')
    if not os.path.isdir(src): continue
    files = {}
    for d, _, fs in os.walk(src):
        for f in fs:
            if f.endswith('.rs'): files[modname(src, os.path.join(d, f))] = os.path.join(d, f)
    mods = set(files) | {''}
    graph = {m: set() for m in mods}
    for m, p in files.items():
        text = open(p).read()
        # drop test modules
        text = re.split(r'#\[cfg\(test\)\]\s*mod tests', text)[0]
        text = re.sub(r'//.*', '', text)
        # re-exports are the module's outline, not a use of the child,
        # unless the module itself uses a name it re-exports
        reexports = re.findall(r'(?m)^pub(?:\([a-z]+\))? use ([a-z_][a-z0-9_]*)::([^;]*);', text)
        text = re.sub(r'(?m)^pub(\([a-z]+\))? use [^;]*;', '', text)
        for child, names in reexports:
            cand = (m + '::' + child) if m else child
            if cand in files:
                for name in re.findall(r'[A-Za-z_][A-Za-z0-9_]*', names):
                    if re.search(r'\b' + name + r'\b', text):
                        graph[m].add(cand)
        parent = m.rsplit('::', 1)[0] if '::' in m else ''
        if re.search(r'\bsuper::(\*|\{|[A-Z])', text) and parent in mods:
            graph[m].add(parent)
        for grp in re.findall(r'\bsuper::\{([^}]*)\}', text):
            for item in re.findall(r'([a-z_][a-z0-9_]*)', grp):
                cand = (parent + '::' + item) if parent else item
                if cand in mods and cand != m: graph[m].add(cand)
        for path in re.findall(r'\bcrate::((?:[a-z_][a-z0-9_]*::)*[a-z_][a-z0-9_]*)', text):
            segs = path.split('::')
            for i in range(len(segs), 0, -1):
                cand = '::'.join(segs[:i])
                if cand in mods and cand != m:
                    graph[m].add(cand); break
        for path in re.findall(r'\bsuper::((?:[a-z_][a-z0-9_]*::)*[a-z_][a-z0-9_]*)', text):
            parent = m.rsplit('::', 1)[0] if '::' in m else ''
            segs = path.split('::')
            for i in range(len(segs), 0, -1):
                cand = '::'.join(([parent] if parent else []) + segs[:i])
                if cand in mods and cand != m:
                    graph[m].add(cand); break
        # relative paths to child modules: `use cell::Cell`, `cell::Cell`
        for name in re.findall(r'(?<![:\w])([a-z_][a-z0-9_]*)::', text):
            child = (m + '::' + name) if m else name
            if child in mods and child != m:
                graph[m].add(child)
        # `use crate::{a, b::c}` groups
        for grp in re.findall(r'\bcrate::\{([^}]*)\}', text):
            for item in re.findall(r'([a-z_][a-z0-9_]*)\s*(?:::|,|$)', grp):
                if item in mods and item != m: graph[m].add(item)
    # Tarjan SCC
    idx, low, st, on, out, c = {}, {}, [], set(), [], [0]
    def sc(v):
        idx[v] = low[v] = c[0]; c[0] += 1; st.append(v); on.add(v)
        for w in graph[v]:
            if w not in idx: sc(w); low[v] = min(low[v], low[w])
            elif w in on: low[v] = min(low[v], idx[w])
        if low[v] == idx[v]:
            comp = []
            while True:
                w = st.pop(); on.discard(w); comp.append(w)
                if w == v: break
            if len(comp) > 1: out.append(sorted(comp))
    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in idx: sc(v)
    for comp in out:
        broken.append(f'{crate}: import circle among {comp}')
        for a in comp:
            broken.append(f'    {a} -> {sorted(x for x in graph[a] if x in comp)}')
    for m, p in files.items():
        code = re.split(r'#\[cfg\(test\)\]\s*mod tests', open(p).read())[0]
        if os.path.basename(p) != 'tests.rs' and code.count('\n') > MAX_LINES:
            broken.append(f'{p}: {code.count(chr(10))} lines before its tests (at most {MAX_LINES})')
for line in broken:
    print(line)
if broken:
    sys.exit(1)
print(f'shape: no import circles, no source file over {MAX_LINES} lines')
