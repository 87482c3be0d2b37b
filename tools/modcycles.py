#!/usr/bin/env python3
"""Print the module graph of a Rust crate (edges from `use crate::..`, `super::..`,
`self::..` and inline `crate::..` paths) and its cycles (strongly connected
components of size > 1, plus one elementary cycle listing per SCC).

usage: modcycles.py <crate>/src [--edges]
       modcycles.py --check [--allow FILE] <crate>/src...

--check looks at several crates (`make lint` passes libs/*/src services/*/src)
and exits non-zero, listing the cycles, when a crate has one and is not in the
allow-list (default: modcycles-allow.txt beside this script), or when a crate
in the allow-list has none left, so that the list only ever shrinks.
"""
import os, re, sys
from itertools import count

def strip(src):
    # drop comments and string/char literals (roughly), keep newlines
    out, i, n = [], 0, len(src)
    while i < n:
        c = src[i]
        if src.startswith('//', i):
            j = src.find('\n', i)
            i = n if j < 0 else j
        elif src.startswith('/*', i):
            depth, i = 1, i + 2
            while i < n and depth:
                if src.startswith('/*', i): depth += 1; i += 2
                elif src.startswith('*/', i): depth -= 1; i += 2
                else:
                    if src[i] == '\n': out.append('\n')
                    i += 1
        elif c == 'r' and re.match(r'r#*"', src[i:i+10]) and (i == 0 or not (src[i-1].isalnum() or src[i-1] == '_')):
            m = re.match(r'r(#*)"', src[i:]); hashes = m.group(1)
            end = src.find('"' + hashes, i + len(m.group(0)))
            seg = src[i:end + 1 + len(hashes)]
            out.append('""' + '\n' * seg.count('\n')); i = end + 1 + len(hashes)
        elif c == '"':
            j = i + 1
            while j < n and src[j] != '"':
                j += 2 if src[j] == '\\' else 1
            out.append('""' + '\n' * src[i:j].count('\n')); i = j + 1
        elif c == "'" and re.match(r"'(\\.|[^\\'])'|'\\u\{[0-9a-fA-F]+\}'|'\\x..'", src[i:i+12]):
            m = re.match(r"'(\\u\{[0-9a-fA-F]+\}|\\x..|\\.|[^\\'])'", src[i:])
            out.append("' '"); i += len(m.group(0))
        else:
            out.append(c); i += 1
    return ''.join(out)

def file_modules(src_dir):
    """module path (tuple) -> file"""
    mods = {}
    for root, _, files in os.walk(src_dir):
        for f in files:
            if not f.endswith('.rs'): continue
            p = os.path.relpath(os.path.join(root, f), src_dir)
            parts = p[:-3].split(os.sep)
            if parts == ['lib'] or parts == ['main']: parts = []
            elif parts[-1] == 'mod': parts = parts[:-1]
            mods[tuple(parts)] = os.path.join(root, f)
    return mods

def expand_use(tree):
    """'a::{b, c::{d, e}}' -> ['a::b', 'a::c::d', 'a::c::e']"""
    tree = re.sub(r'\s+', '', tree)
    def split_top(s):
        parts, depth, cur = [], 0, ''
        for ch in s:
            if ch == '{': depth += 1
            if ch == '}': depth -= 1
            if ch == ',' and depth == 0: parts.append(cur); cur = ''
            else: cur += ch
        if cur: parts.append(cur)
        return parts
    def go(s):
        i = s.find('{')
        if i < 0:
            return [re.sub(r'\bas\w+$', '', s)]
        prefix, inner = s[:i], s[i+1:s.rfind('}')]
        res = []
        for p in split_top(inner):
            for q in go(p):
                res.append(prefix + q if q != 'self' else prefix.rstrip(':'))
        return res
    return [p for p in go(tree) if p]

def refs(path_mod, text, mods):
    """yield (absolute path segments) referenced by the file of module path_mod"""
    # track inline `mod x {` so super:: inside it resolves to the file's module
    lines = text.split('\n')
    depth, stack = 0, []  # stack of (depth_at_open, name)
    uses = []
    buf = None
    for line in lines:
        for m in re.finditer(r'\bmod\s+(\w+)\s*\{', line):
            stack.append((depth, m.group(1)))
        cur_mod = path_mod + tuple(n for _, n in stack)
        s = line
        if buf is not None:
            buf += s
            if ';' in buf:
                uses.append((cur_mod, buf.split(';')[0])); buf = None
        else:
            m = re.search(r'\buse\s+(.*)', s)
            if m:
                body = m.group(1)
                if ';' in body: uses.append((cur_mod, body.split(';')[0]))
                else: buf = body
            if not re.search(r'\buse\s', s):
                for m in re.finditer(r'(?<![\w:])((?:crate|super|self)(?:::\w+)+)', s):
                    uses.append((cur_mod, m.group(1)))
                # a path that starts with a child module's name (2018 relative paths)
                for m in re.finditer(r'(?<![\w:])(\w+(?:::\w+)+)', s):
                    if cur_mod + (m.group(1).split('::')[0],) in mods:
                        uses.append((cur_mod, 'self::' + m.group(1)))
        depth += line.count('{') - line.count('}')
        while stack and depth <= stack[-1][0]:
            stack.pop()
    for cur_mod, u in uses:
        for p in expand_use(u):
            segs = [x for x in p.split('::') if x]
            if segs and segs[0] not in ('crate', 'super', 'self') and cur_mod + (segs[0],) in mods:
                segs = ['self'] + segs
            if not segs or segs[0] not in ('crate', 'super', 'self'): continue
            base = list(cur_mod)
            if segs[0] == 'crate': base = []; segs = segs[1:]
            else:
                while segs and segs[0] in ('super', 'self'):
                    if segs[0] == 'super': base = base[:-1]
                    segs = segs[1:]
            yield tuple(base + segs)

def analyse(src):
    """(modules, edges, cyclic components, elementary cycles) of the crate whose sources are in src."""
    mods = file_modules(src)
    texts = {m: strip(open(f).read()) for m, f in mods.items()}
    # re-exports of each file module: name -> target path
    reexp = {}
    for m, t in texts.items():
        for mm in re.finditer(r'\bpub(?:\([^)]*\))?\s+use\s+([^;]+);', t):
            for p in expand_use(mm.group(1)):
                segs = p.split('::')
                if segs[0] == 'crate': tgt = tuple(segs[1:])
                elif segs[0] == 'self': tgt = m + tuple(segs[1:])
                elif segs[0] == 'super': tgt = m[:-1] + tuple(segs[1:])
                else: tgt = m + tuple(segs)
                name = re.split(r'\bas\b', p)[-1].split('::')[-1]
                reexp[m + (segs[-1],)] = tgt
    def resolve(path, seen=0):
        best = ()
        for k in range(len(path), -1, -1):
            if tuple(path[:k]) in mods: best = tuple(path[:k]); break
        rest = path[len(best):]
        if rest and best + (rest[0],) in reexp and seen < 5:
            return resolve(reexp[best + (rest[0],)] + tuple(rest[1:]), seen + 1)
        return best
    edges = {m: set() for m in mods}
    for m, t in texts.items():
        for p in refs(m, t, mods):
            tgt = resolve(p)
            if tgt != m and not (len(tgt) < len(m) and m[:len(tgt)] == tgt and p[len(tgt):] == ()):
                edges[m].add(tgt)
    # Tarjan SCC
    idx, low, on, st, sccs, c = {}, {}, set(), [], [], count()
    def strong(v):
        idx[v] = low[v] = next(c); st.append(v); on.add(v)
        for w in edges[v]:
            if w not in idx: strong(w); low[v] = min(low[v], low[w])
            elif w in on: low[v] = min(low[v], idx[w])
        if low[v] == idx[v]:
            comp = []
            while True:
                w = st.pop(); on.discard(w); comp.append(w)
                if w == v: break
            if len(comp) > 1: sccs.append(comp)
    sys.setrecursionlimit(10000)
    for v in edges:
        if v not in idx: strong(v)
    # elementary cycles within each SCC (small graphs: simple DFS)
    cycles = []
    for comp in sccs:
        cs = set(comp)
        order = sorted(cs)
        for i, s in enumerate(order):
            allowed = set(order[i:])
            def dfs(v, path):
                for w in edges[v]:
                    if w == s: cycles.append(path[:])
                    elif w in allowed and w not in path and w > s:
                        path.append(w); dfs(w, path); path.pop()
            dfs(s, [s])
    return mods, edges, sccs, sorted(cycles, key=lambda c: (len(c), c))

def name(m):
    return '::'.join(m) or 'crate'

def cycle_text(cyc):
    return ' -> '.join(name(x) for x in cyc + [cyc[0]])

def crate_dir(src):
    """libs/ring/src/ -> libs/ring: how the allow-list names a crate."""
    d = os.path.normpath(src)
    return os.path.dirname(d) if os.path.basename(d) == 'src' else d

def read_allow(path):
    """crate dir -> reason. One crate a line, its reason after it; # comments."""
    allowed = {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.split('#', 1)[0].strip()
            if not line: continue
            crate, _, reason = line.partition(' ')
            if not reason.strip():
                sys.exit(f'{path}:{n}: {crate} has no reason: say why its cycles may stay for now')
            allowed[os.path.normpath(crate)] = reason.strip()
    return allowed

def check(args):
    allow = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'modcycles-allow.txt')
    if args[:1] == ['--allow']:
        if len(args) < 2: sys.exit('--allow needs a file')
        allow, args = args[1], args[2:]
    if not args: sys.exit('--check needs the crates\' source directories')
    allowed = read_allow(allow)
    failures, seen = [], set()
    for src in args:
        if not os.path.isdir(src):
            failures.append(f'{src}: not a directory'); continue
        crate = crate_dir(src); seen.add(crate)
        _, _, _, cycles = analyse(src)
        if crate in allowed:
            if cycles:
                print(f'{crate}: {len(cycles)} cycles, allowed for now: {allowed[crate]}')
            else:
                failures.append(f'{crate}: no cycles left; remove its line from {allow}')
        elif cycles:
            failures.append(f'{crate}: {len(cycles)} import cycles between its files '
                            '(move what the files share into a leaf module):\n'
                            + '\n'.join('  cycle: ' + cycle_text(c) for c in cycles))
    for crate in sorted(set(allowed) - seen):
        failures.append(f'{crate}: listed in {allow} but not checked (gone, or a typo?)')
    for f in failures:
        print(f, file=sys.stderr)
    print(f'modcycles: {len(seen)} crates, {len(failures)} failing', file=sys.stderr if failures else sys.stdout)
    sys.exit(1 if failures else 0)

def main():
    if sys.argv[1:2] == ['--check']:
        check(sys.argv[2:])
    args = [a for a in sys.argv[1:] if a != '--edges']
    if len(args) != 1: sys.exit(__doc__)
    src = args[0].rstrip('/')
    mods, edges, sccs, cycles = analyse(src)
    if '--edges' in sys.argv:
        for m in sorted(edges):
            print(f'{name(m)} -> {", ".join(sorted(name(x) for x in edges[m]))}')
    print(f'{src}: {len(mods)} modules, {sum(map(len, edges.values()))} edges, '
          f'{len(sccs)} cyclic components, {len(cycles)} elementary cycles')
    for cyc in cycles:
        print('  cycle: ' + cycle_text(cyc))
    sys.exit(1 if cycles else 0)

main()
