"""The documentation's cross-references point at things that exist.

References go stale silently when code moves:

* **Notes.**  A Note is defined by a line ``Note [name]`` alone (in a
  docstring, or after ``#`` in a comment) followed by an underline of ``~``
  or ``-`` (again possibly after ``#``).  Every other ``Note [name]`` is a
  citation, and must name a defined Note.  A citation followed by ``in`` or
  ``of`` and a module -- a path (``kernels/runs.py``,
  ``numbaconv/costs.py``, in backquotes or not) or ``:mod:`numbaconv.x``` --
  must name a Note defined in that module.
* **Repository paths.**  A path that starts with one of the repository's
  top-level folders (``docs/``, ``tests/``, ``numbaconv/``, ...) or one of
  the package's subpackages (``kernels/``, ``algorithms/``, ..., read from
  ``numbaconv/``) and ends in a file extension must exist.  Paths with glob
  or placeholder characters (``docs/results-*.md``, ``<name>``) and URLs
  are skipped.  Relative Markdown links (``[text](other.md)``) must exist
  too, relative to the Markdown file.  A section named right after a
  Markdown path -- ``docs/x.md, "Heading"``, ``docs/x.md ("Heading"`` --
  must be a heading of that file (backquotes and case aside).

Both scan every ``.py`` and ``.md`` file of the repository (hidden and build
folders skipped), so moved or renamed files are found without a list here
to keep up to date.  A reference may wrap across one line break (in a
docstring, a comment or a Markdown paragraph).  A failure lists every
stale reference as ``file:line``.

A third test checks the one table the docs copy from the code: the public
benchmark shapes of docs/benchmarking.md against the suite's.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "numbaconv"

#: Folders never scanned: version control, environments, build output.
SKIPPED_FOLDERS = {"build", "dist", "node_modules", "venv", "env", "__pycache__"}

#: A line break inside a reference: the newline, the next line's indent and
#: a comment marker (``#``, ``#:``), Markdown quote (``>``) or, for a
#: string literal continued on the next line, the quotes around the break.
_BREAK = r'[ \t]*"?[ \t]*\n[ \t]*(?:#:?|>|")?[ \t]*'
_SPACE = rf"(?:[ \t]+|{_BREAK})"

NOTE = re.compile(rf"Note{_SPACE}\[([^\]\n]+(?:{_BREAK}[^\]\n]+)?)\]")
NOTE_DEFINITION = re.compile(r"^[ \t]*(?:#[ \t]*)?Note \[([^\]\n]+)\][ \t]*\n"
                             r"[ \t]*(?:#[ \t]*)?(?:~{3,}|-{3,})[ \t]*$", re.MULTILINE)
#: ``in``/``of`` and a module after a citation: ``:mod:`a.b```, a backquoted
#: or bare path ending in ``.py``.
NOTE_MODULE = re.compile(rf"{_SPACE}(?:in|of){_SPACE}"
                         r"(?::mod:`([\w.]+)`|`([\w./]+\.py)`|([\w./]+\.py)\b)")

FILE_ENDINGS = ("py", "md", "json", "toml", "txt", "png", "svg", "csv", "yml", "yaml", "sh",
                "cfg", "ini", "ipynb")
MARKDOWN_LINK = re.compile(r"\]\(([^)\s]+)\)")
SECTION = re.compile(rf"((?:docs/)?[\w./-]+\.md)`?,?(?:{_SPACE})?\(?\"([^\"\n]+)\"")


def source_files():
    """Every .py and .md file of the repository, repository-relative, sorted."""
    found = []
    for folder, subfolders, files in os.walk(ROOT):
        subfolders[:] = sorted(d for d in subfolders
                               if not d.startswith(".") and d not in SKIPPED_FOLDERS
                               and not d.endswith(".egg-info"))
        found += [Path(folder, f).relative_to(ROOT) for f in files if f.endswith((".py", ".md"))]
    # this file writes out the forms it looks for
    return sorted(p for p in found if ROOT / p != Path(__file__).resolve())


def _text(path):
    return (ROOT / path).read_text(encoding="utf-8")


def _line(text, offset):
    return text.count("\n", 0, offset) + 1


def _one_line(name):
    return " ".join(re.sub(_BREAK, " ", name).split())


def note_definitions():
    """{note name: set of repository-relative files defining it}."""
    defined = {}
    for path in source_files():
        for match in NOTE_DEFINITION.finditer(_text(path)):
            defined.setdefault(_one_line(match.group(1)), set()).add(path.as_posix())
    return defined


def note_citations():
    """(file, line, name, module path or None) for every Note citation."""
    found = []
    for path in source_files():
        text = _text(path)
        defining = {m.start(1) for m in NOTE_DEFINITION.finditer(text)}
        for match in NOTE.finditer(text):
            if match.start(1) in defining:
                continue
            module = NOTE_MODULE.match(text, match.end())
            found.append((path.as_posix(), _line(text, match.start()), _one_line(match.group(1)),
                          module and _module_path(module)))
    return found


def _module_path(match):
    """The module a citation names, as written: a path ending in .py."""
    dotted, quoted, bare = match.groups()
    if dotted:
        return dotted.replace(".", "/") + ".py"
    return quoted or bare


def _module_files(cited, files):
    """The files ``cited`` (``kernels/runs.py``, ``numbaconv/cuda.py``) may be:
    those whose path ends with it, a package's ``__init__.py`` included."""
    package = cited[:-len(".py")] + "/__init__.py"
    return {f for f in files
            if any(f == c or f.endswith("/" + c) for c in (cited, package))}


def test_every_cited_note_is_defined_where_cited():
    defined = note_definitions()
    files = {p.as_posix() for p in source_files()}
    citations = note_citations()
    assert len(defined) > 30 and len(citations) > 200      # the matchers still match
    problems = []
    for path, line, name, module in citations:
        if name not in defined:
            problems.append(f"{path}:{line}: Note [{name}] is defined nowhere")
            continue
        if module is None:
            continue
        candidates = _module_files(module, files)
        if not candidates:
            problems.append(f"{path}:{line}: Note [{name}] cites {module}, which does not exist")
        elif not candidates & defined[name]:
            problems.append(f"{path}:{line}: Note [{name}] is cited in {module} but defined in "
                            f"{', '.join(sorted(defined[name]))}")
    assert not problems, "\n".join(problems)


def _path_pattern():
    """Paths that start with a top-level folder of the repository or a
    subpackage of numbaconv (a path relative to the package, as the
    package's docstrings write them) and end in a file extension."""
    roots = sorted(p.name for p in ROOT.iterdir()
                   if p.is_dir() and not p.name.startswith(".") and p.name not in SKIPPED_FOLDERS)
    subpackages = sorted(p.name for p in PACKAGE.iterdir()
                         if (p / "__init__.py").is_file())
    folders = "|".join(map(re.escape, roots + subpackages))
    # not inside a longer path or a URL; glob and placeholder characters
    # are matched so that the whole token can be recognised and skipped
    endings = "|".join(FILE_ENDINGS)
    return re.compile(rf"(?<![\w/.:*<>-])((?:{folders})/[\w./*<>{{}}-]*?\.(?:{endings}))"
                      r"(?![\w/])"), set(roots)


def path_references():
    """(file, line, path as written, the file it must be) for every
    repository path named in a .py or .md file, and every relative link of
    a Markdown file."""
    pattern, roots = _path_pattern()
    found = []
    for path in source_files():
        text = _text(path)
        for match in pattern.finditer(text):
            written = match.group(1)
            if any(c in written for c in "*<>{}"):
                continue                                   # a pattern, not a path
            base = ROOT if written.split("/")[0] in roots else PACKAGE
            found.append((path.as_posix(), _line(text, match.start()), written, base / written))
        if path.suffix == ".md":
            for match in MARKDOWN_LINK.finditer(text):
                target = match.group(1).split("#")[0]
                if not target or re.match(r"[a-z][a-z+.-]*:", target):
                    continue                               # an anchor, a URL, mailto:
                found.append((path.as_posix(), _line(text, match.start()), target,
                              (ROOT / path).parent / target))
    return found


def _headings(path):
    return {_section(line.lstrip("#")) for line in path.read_text(encoding="utf-8").splitlines()
            if line.startswith("#")}


def _section(title):
    return " ".join(title.replace("`", "").split()).lower()


def section_references():
    """(file, line, Markdown path as written, section) for every section
    named after a Markdown path (``docs/x.md, "Heading"``)."""
    found = []
    for path in source_files():
        text = _text(path)
        found += [(path.as_posix(), _line(text, m.start()), m.group(1), m.group(2))
                  for m in SECTION.finditer(text)]
    return found


def test_every_repository_path_named_in_the_docs_exists():
    references = path_references()
    assert len(references) > 100                           # the matcher still matches
    missing = [f"{path}:{line}: {written}" for path, line, written, target in references
               if not target.exists()]
    sections = section_references()
    assert len(sections) > 5
    for path, line, written, section in sections:
        target = ROOT / written if (ROOT / written).exists() else (ROOT / path).parent / written
        if target.exists() and _section(section) not in _headings(target):
            missing.append(f'{path}:{line}: {written}, "{section}" (no such heading)')
    assert not missing, "paths or sections that do not exist:\n" + "\n".join(missing)


def test_the_public_shapes_table_is_the_suites():
    """docs/benchmarking.md copies the suite's public shapes; they agree
    (name, function, input, weight and arguments; the PyTorch guide times
    are given there as measured, a range for mc_bigk2d)."""
    from numbaconv.bench.suite import PUBLIC_SHAPES

    text = _text(Path("docs", "benchmarking.md"))
    section = text.split("## Public shapes", 1)[1].split("\n## ", 1)[0]
    rows = [[cell.strip() for cell in line.strip("|").split("|")]
            for line in section.splitlines() if line.startswith("| ")][2:]   # header, rule

    def shape(sizes):
        return "(" + ",".join(map(str, sizes)) + ")"

    documented = {r[0]: (r[1], r[2], r[3], r[4]) for r in rows}
    suite = {c.name: (c.op, shape(c.input_shape), shape(c.weight_shape),
                      ", ".join(f"{k}={v}" for k, v in c.kwargs.items()))
             for c in PUBLIC_SHAPES}
    assert documented == suite
