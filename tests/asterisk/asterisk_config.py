"""Reading asterisk_conf/ the way Asterisk 20 does, for tests of the shipped configuration.

`load` follows main/config.c: `;` comments (`\\;` is a literal), `[name]` categories, `[name](!)`
templates, `[name](a,b)` inheritance (the template's lines first), `[name](+)` appending,
`#include`/`#tryinclude` read in place. An included file starts in the category that is current
where it is included, and a `[section]` inside it does not change the category the including
file goes on with (config_text_file_load keeps its own `cat`). Readers browse categories with
ast_category_browse, which skips templates: `Config.categories()` does too.

`Dialplan` is pbx_config's view: [globals] become globals, every other category but [general]
is a context of `exten =>`/`same =>` lines and `include =>`; `match` follows pbx.c's pattern
rules (`_` patterns with X, Z, N, [..], `.` one or more, `!` zero or more).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Category:
    name: str
    template: bool = False
    lines: list[tuple[str, str]] = field(default_factory=list)

    def get(self, key: str) -> str | None:
        return next((v for k, v in self.lines if k.lower() == key.lower()), None)

    def all(self, key: str) -> list[str]:
        return [v for k, v in self.lines if k.lower() == key.lower()]


@dataclass
class Config:
    cats: list[Category] = field(default_factory=list)
    current: Category | None = None

    def categories(self, name: str | None = None) -> list[Category]:
        """ast_category_browse / ast_category_get: templates are not there."""
        return [c for c in self.cats if not c.template and (name is None or c.name.lower() == name.lower())]

    def category(self, name: str) -> Category | None:
        found = self.categories(name)
        return found[0] if found else None


def _strip_comment(line: str) -> str:
    out, i = [], 0
    while i < len(line):
        if line[i] == "\\" and i + 1 < len(line) and line[i + 1] == ";":
            out.append(";")
            i += 2
            continue
        if line[i] == ";":
            break
        out.append(line[i])
        i += 1
    return "".join(out).strip()


def load(path: Path, cfg: Config | None = None) -> Config:
    cfg = cfg or Config()
    cat = cfg.current  # config_text_file_load: cat = ast_config_get_current_category(cfg)
    for lineno, raw in enumerate(path.read_text().splitlines(), 1):
        line = _strip_comment(raw)
        if not line:
            continue
        if line.startswith("["):
            m = re.fullmatch(r"\[([^\]]+)\](?:\(([^)]*)\))?", line)
            if m is None:
                raise ValueError(f"{path.name}:{lineno}: bad category header {line!r}")
            name, opts = m.group(1), [o.strip() for o in (m.group(2) or "").split(",") if o.strip()]
            new = Category(name)
            for opt in opts:
                if opt == "!":
                    new.template = True
                elif opt.startswith("+"):
                    existing = next((c for c in cfg.cats if c.name.lower() == name.lower()), None)
                    if existing is None:
                        # "Category addition requested, but category does not exist": the file is invalid
                        raise ValueError(f"{path.name}:{lineno}: [{name}](+) without [{name}]")
                    new = existing
                else:
                    base = next((c for c in cfg.cats if c.name.lower() == opt.lower()), None)
                    if base is None:
                        raise ValueError(f"{path.name}:{lineno}: [{name}] inherits from missing [{opt}]")
                    new.lines.extend(base.lines)
            if new not in cfg.cats:
                cfg.cats.append(new)
            cat = cfg.current = new
        elif line.startswith("#"):
            directive, _, arg = line[1:].partition(" ")
            arg = arg.strip().strip('"<>')
            target = path.parent / arg
            if directive.lower() in ("include", "tryinclude"):
                if not target.exists():
                    if directive.lower() == "include":
                        raise ValueError(f"{path.name}:{lineno}: #include {arg}: no such file")
                    continue
                cfg.current = cat
                load(target, cfg)  # the included file's [sections] do not change our `cat`
            else:
                raise ValueError(f"{path.name}:{lineno}: unsupported directive {line!r}")
        else:
            if cat is None:
                raise ValueError(f"{path.name}:{lineno}: no category context")
            key, sep, value = line.partition("=")
            if not sep:
                raise ValueError(f"{path.name}:{lineno}: no '=' in {line!r}")
            cat.lines.append((key.strip(), value.lstrip(">").strip()))
    return cfg


# ---- the dialplan ----------------------------------------------------------------------------


@dataclass
class Step:
    priority: int | str  # a number, or "hint"
    label: str | None
    app: str
    data: str


@dataclass
class Dialplan:
    globals: dict[str, str]
    contexts: dict[str, dict[str, list[Step]]]
    includes: dict[str, list[str]]

    @classmethod
    def read(cls, path: Path) -> Dialplan:
        cfg = load(path)
        glob: dict[str, str] = {}
        for cat in cfg.categories("globals"):
            glob.update(dict(cat.lines))
        contexts: dict[str, dict[str, list[Step]]] = {}
        includes: dict[str, list[str]] = {}
        for cat in cfg.categories():
            if cat.name.lower() in ("general", "globals"):
                continue
            exts = contexts.setdefault(cat.name, {})
            incl = includes.setdefault(cat.name, [])
            last: str | None = None
            for key, value in cat.lines:
                if key.lower() == "include":
                    incl.append(value)
                    continue
                if key.lower() == "exten":
                    exten, prio, rest = [*value.split(",", 2), "", ""][:3]
                    last = exten.strip()
                elif key.lower() == "same":
                    if last is None:
                        raise ValueError(f"[{cat.name}]: same => before any exten =>")
                    prio, _, rest = value.partition(",")
                    exten = last
                else:
                    raise ValueError(f"[{cat.name}]: pbx_config ignores {key!r} (Unknown directive)")
                prio = prio.strip()
                m = re.fullmatch(r"(\w+|n)(?:\((\w+)\))?", prio)
                if m is None:
                    raise ValueError(f"[{cat.name}] {exten}: bad priority {prio!r}")
                app, _, data = rest.strip().partition("(")
                steps = exts.setdefault(exten.strip(), [])
                if m.group(1) == "hint":
                    steps.append(Step("hint", None, "", rest.strip()))
                    continue
                number = len([s for s in steps if s.priority != "hint"]) + 1 if m.group(1) == "n" else int(m.group(1))
                steps.append(Step(number, m.group(2), app.strip(), data[:-1] if data.endswith(")") else data))
        return cls(glob, contexts, includes)

    def find(self, context: str, exten: str) -> str | None:
        """The extension of `context` (or a context it includes) that `exten` runs: an exact
        name first, then the patterns that match (the most specific by pbx.c's rule is not
        needed here: the tests name cases only one pattern matches)."""
        seen: set[str] = set()
        todo = [context]
        while todo:
            ctx = todo.pop(0)
            if ctx in seen or ctx not in self.contexts:
                continue
            seen.add(ctx)
            exts = self.contexts[ctx]
            if exten in exts and any(s.priority == 1 for s in exts[exten]):
                return exten
            for name, steps in exts.items():
                if name.startswith("_") and match(name, exten) and any(s.priority == 1 for s in steps):
                    return name
            todo.extend(self.includes.get(ctx, []))
        return None

    def steps(self, context: str, exten: str) -> list[Step]:
        return [s for s in self.contexts[context][exten] if s.priority != "hint"]


def match(pattern: str, exten: str) -> bool:
    """pbx.c's extension pattern match for a complete number (E_MATCH)."""
    if not pattern.startswith("_"):
        return pattern == exten
    regex = ""
    i, p = 0, pattern[1:]
    while i < len(p):
        ch = p[i]
        if ch in "xX":
            regex += "[0-9]"
        elif ch in "zZ":
            regex += "[1-9]"
        elif ch in "nN":
            regex += "[2-9]"
        elif ch == "[":
            end = p.index("]", i)
            regex += "[" + p[i + 1 : end].replace("\\", "\\\\") + "]"
            i = end
        elif ch == ".":
            regex += ".+"
        elif ch == "!":
            regex += ".*"
        else:
            regex += re.escape(ch)
        i += 1
    return re.fullmatch(regex, exten) is not None


def expand(text: str, variables: dict[str, str]) -> str:
    """${VAR}, ${VAR:offset}, ${FILTER(chars,text)} and ${FUNC(arg)} as variables named so."""

    def one(expr: str) -> str:
        m = re.fullmatch(r"FILTER\(([^,]*),(.*)\)", expr, re.S)
        if m:
            allowed = m.group(1)
            ranges = re.findall(r"(.)-(.)|(.)", allowed)
            ok = set()
            for lo, hi, single in ranges:
                if single:
                    ok.add(single)
                else:
                    ok.update(chr(c) for c in range(ord(lo), ord(hi) + 1))
            return "".join(c for c in expand(m.group(2), variables) if c in ok)
        m = re.fullmatch(r"(\w+):(-?\d+)", expr)
        if m:
            return variables.get(m.group(1), "")[int(m.group(2)) :]
        return variables.get(expr, "")

    out, i = "", 0
    while i < len(text):
        if text.startswith("${", i):
            depth, j = 1, i + 2
            while depth:
                if text.startswith("${", j):
                    depth, j = depth + 1, j + 2
                    continue
                if text[j] == "}":
                    depth -= 1
                j += 1
            out += one(text[i + 2 : j - 1])
            i = j
        else:
            out += text[i]
            i += 1
    return out
