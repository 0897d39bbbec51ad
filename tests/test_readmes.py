"""Every README in English has a twin in Chinese that makes the same claims: the 中文版 pairing.

The English documents are README.md at the root, lessons/NN_*/README.md and docs/instructors.md;
each has a twin beside it, the same name with ``.zh-CN.md`` (README.zh-CN.md,
docs/instructors.zh-CN.md). The prose is free, the facts are not. For each pair:

* **Twins and their first lines.** Every English document has its twin (a new lesson without one
  fails, naming the missing file) and no twin is an orphan. The first 5 lines of each link to the
  other. A lesson's twin starts, like the English, with its ``# NN_topic`` heading.
* **Cited tests.** A cited test is a backticked identifier ``test_...`` in the prose (a
  parametrized one keeps its ``[id]``; ``test_prefix_*`` stands for every test with that
  prefix; a call such as ``test_connect()``, the 2019 post's handler, is code, not a citation),
  and a cited test file is a backticked ``test_*.py`` or ``tests/.../test_*.py``. Both
  texts cite the same set of them. Each exists: a test function of that name (or prefix) in a
  file under tests/, found by parsing the files with ``ast`` (no pytest collection, nothing
  imported or run); a ``[id]`` must be one of the ids of that function's literal
  ``pytest.mark.parametrize`` values, when they are literal.
* **Named files.** A code span that is a path (``app.py``, ``static/vendor/``,
  ``src/lesson_launcher/serve.py``, ``engineio/socket.py``: a name with one of the usual
  extensions, or folders ending in ``/``) is a claim about where something is: both texts name
  the same set, ``X.zh-CN.md`` counting as ``X.md``. Not checked for existence: most are paths in
  the installed libraries.
* **Commands.** A command is a line starting with ``$ `` in a ```` ```console ```` block, with
  its ``\\`` continuation lines, its prompt and trailing shell comment (`` # ...``, which a
  translation may translate) removed. Both texts give the same commands **in the same order**:
  the twin follows the English section by section, so an order that differs is a section that
  moved or is missing.
* **Code blocks.** Every fenced block (console, python, nginx, text or untagged: program
  output, the untagged command blocks of lessons 03 and 04, code) appears in both, in the same
  order, with the same language tag and the same text once comments (from a whitespace-preceded
  ``#`` to the end of the line, and comment-only lines) and trailing spaces are removed:
  comments may be translated, code and output may not.
* **Links to files.** A link is a markdown link or image ``[text](target)`` outside code whose
  target has no URL scheme (``http:``, ``mailto:`` ... are not files and are not compared).
  Each resolves, relative to its document, to a file or folder that exists; an ``#anchor`` must
  be a heading of the target (GitHub's slugs: lower case, punctuation dropped, spaces to ``-``,
  Chinese characters kept). Pairing, anchors ignored: an English link to ``X.md`` whose twin
  ``X.zh-CN.md`` exists is matched by the twin's link to ``X.zh-CN.md`` (and a link to
  ``X.zh-CN.md`` by one to ``X.md``); a link to a folder that holds a README.zh-CN.md (a lesson
  folder) is matched by a link to that README.zh-CN.md, so that a Chinese reader who follows a
  link lands on Chinese text; any other target is matched by the same target. Both documents
  link the same set of targets under that mapping. A link to a heading of the same page
  (``#anchor`` alone) is not paired: the headings differ by language; its anchor must exist.

Cheap on purpose: it reads text files, parses tests/ with ``ast`` and starts nothing.
"""
import ast
import difflib
import re
from functools import lru_cache
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
TWIN_SUFFIX = ".zh-CN.md"
FIRST_LINES = 5


def english_documents():
    lessons = sorted(p / "README.md" for p in (ROOT / "lessons").iterdir()
                     if re.match(r"\d\d_", p.name) and (p / "README.md").exists())
    return [ROOT / "README.md", *lessons, ROOT / "docs" / "instructors.md"]


def twin_of(path):
    """README.md <-> README.zh-CN.md, instructors.md <-> instructors.zh-CN.md."""
    if path.name.endswith(TWIN_SUFFIX):
        return path.with_name(path.name[:-len(TWIN_SUFFIX)] + ".md")
    return path.with_name(path.stem + TWIN_SUFFIX)


def rel(path):
    return path.relative_to(ROOT).as_posix()


ENGLISH = english_documents()
PAIRS = [pytest.param(doc, id=rel(doc)) for doc in ENGLISH]
ALL_DOCS = [pytest.param(doc, id=rel(doc)) for english in ENGLISH
            for doc in (english, twin_of(english)) if doc.exists()]


# --- reading a markdown document ----------------------------------------------------------

PATH = r"(?:[\w.-]+/)*[\w.-]+\.(?:py|md|js|html|json|lock|toml|ipynb|txt|sh|png|cfg)|(?:[\w.-]+/)+"
FENCE = re.compile(r"^\s*(```+|~~~+)\s*([\w+-]*)\s*$")


class Document:
    """One markdown file: its prose (paragraphs, code removed) and its fenced code blocks."""

    def __init__(self, path, text=None):
        self.path = path
        self.text = path.read_text(encoding="utf-8") if text is None else text
        self.lines = self.text.splitlines()
        self.blocks = []       # (language, [lines], first line number)
        self.paragraphs = []   # (first line number, text)
        fence, prose = None, []
        for number, line in enumerate(self.lines, 1):
            opening = FENCE.match(line)
            if fence is None and opening:
                fence = opening[1]
                self.blocks.append((opening[2], [], number))
                self._paragraph(prose)
                prose = []
            elif fence is not None:
                if line.strip() == fence:
                    fence = None
                else:
                    self.blocks[-1][1].append(line)
            elif line.strip():
                prose.append((number, line))
            else:
                self._paragraph(prose)
                prose = []
        self._paragraph(prose)
        assert fence is None, f"{rel(path)}: a code block opened is never closed"

    def _paragraph(self, prose):
        if prose:
            self.paragraphs.append((prose[0][0], "\n".join(line for _, line in prose)))

    def spans(self):
        """(line number, text) of every inline code span of the prose."""
        for first, text in self.paragraphs:
            for match in re.finditer(r"(`+)(.+?)\1", text, re.S):
                yield first + text.count("\n", 0, match.start()), match[2].strip()

    def cited_tests(self):
        """{citation: line}: backticked test names (with [id] or *) and test files."""
        cited = {}
        for line, span in self.spans():
            if re.fullmatch(r"(?:[\w./-]*/)?test_\w+\.py", span):
                cited.setdefault(span, line)
                continue
            for name in re.findall(r"(?<![\w/.])test_\w+(?:\[[^\]\s]*\]|\*)?(?![\w(]|\.py)", span):
                cited.setdefault(name, line)
        return cited

    def named_files(self):
        """{path: line}: code spans that are a file or folder path (`app.py`, `docs/bench/`,
        `engineio/socket.py`), test files aside; a twin's name counts as its English one's."""
        named = {}
        for line, span in self.spans():
            if re.fullmatch(PATH, span) and not re.fullmatch(r"(?:[\w./-]*/)?test_\w+\.py", span):
                named.setdefault(span.replace(TWIN_SUFFIX, ".md"), line)
        return named

    def commands(self):
        """The ``$ `` lines of the console blocks, in order, prompt and comment removed."""
        found = []
        for language, lines, first in self.blocks:
            if language != "console":
                continue
            current = None
            for offset, line in enumerate(lines):
                if current is not None:
                    current[1] += " " + line.strip()
                elif line.startswith("$ "):
                    current = [first + 1 + offset, line[2:].strip()]
                else:
                    continue
                if current[1].endswith("\\"):
                    current[1] = current[1][:-1].rstrip()
                else:
                    found.append((current[0], without_comment(current[1])))
                    current = None
        return found

    def code_blocks(self):
        """(language, code without comments) of every fenced block, in order."""
        return [(language, "\n".join(code for code in map(without_comment, lines) if code),
                 first) for language, lines, first in self.blocks]

    def links(self):
        """(line, target) of every markdown link or image of the prose."""
        for first, text in self.paragraphs:
            for match in re.finditer(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?"
                                     r"(?:\s+\"[^\"]*\")?\s*\)", text):
                yield first + text.count("\n", 0, match.start()), match[1]

    def file_links(self):
        """(line, path relative to the repository, #anchor or None) of links to files."""
        for line, target in self.links():
            if re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*:", target):
                continue  # http:, https:, mailto: ...: not a file of the repository
            path, _, anchor = unquote(target).partition("#")
            resolved = (self.path.parent / path).resolve() if path else self.path
            yield line, target, resolved, anchor or None

    def anchors(self):
        """GitHub's ids of the headings, and explicit <a id=...> / <a name=...> anchors."""
        found, seen = set(), {}
        in_code = {n for _, lines, first in self.blocks for n in range(first, first + len(lines) + 2)}
        for number, line in enumerate(self.lines, 1):
            if number in in_code:
                continue
            found.update(re.findall(r"<a\s+(?:id|name)=\"([^\"]+)\"", line))
            heading = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
            if heading:
                slug = github_slug(heading[1])
                count = seen.get(slug, 0)
                seen[slug] = count + 1
                found.add(slug if count == 0 else f"{slug}-{count}")
        return found


def without_comment(line):
    """A line of code without its comment: from a `#` at its start or after a space."""
    return re.sub(r"(^|\s)#.*$", "", line).rstrip()


def github_slug(heading):
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)   # a link: its text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())        # \w: Chinese characters too
    return text.replace(" ", "-")


@lru_cache(maxsize=None)
def read(path):
    return Document(path)


# --- the tests under tests/, by their source -----------------------------------------------

@lru_cache(maxsize=None)
def functions_under_tests():
    """{test function name: [ids of its literal parametrize values, or None]} under tests/."""
    found = {}
    for file in sorted(TESTS.rglob("*.py")):
        tree = ast.parse(file.read_text(encoding="utf-8"), filename=str(file))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"):
                found.setdefault(node.name, []).append(parametrize_ids(node))
    return found


def parametrize_ids(function):
    """The ids pytest gives a function's parametrize values; None unless all are plain literals
    (numbers, strings, booleans, None, or tuples of them for several argument names)."""
    scalar = (int, float, str, bool, type(None))
    ids = [[]]
    for decorator in function.decorator_list:
        if not (isinstance(decorator, ast.Call) and ast.unparse(decorator.func).endswith("parametrize")):
            continue
        try:
            argnames = ast.literal_eval(decorator.args[0])
            explicit = next((k.value for k in decorator.keywords if k.arg == "ids"), None)
            values = ast.literal_eval(explicit if explicit is not None else decorator.args[1])
        except (ValueError, IndexError, TypeError, SyntaxError):
            return None
        several = len(argnames) > 1 if isinstance(argnames, (list, tuple)) else "," in argnames
        if explicit is not None:
            names = [str(v) for v in values]
        elif several and all(isinstance(v, (list, tuple)) and all(isinstance(x, scalar) for x in v)
                             for v in values):
            names = ["-".join(map(str, v)) for v in values]
        elif not several and all(isinstance(v, scalar) for v in values):
            names = [str(v) for v in values]
        else:
            return None
        ids = [new + [old] for old in names for new in ids]  # the innermost decorator's id first
    return {"-".join(reversed(parts)) for parts in ids}


def missing_test(citation):
    """Why a citation names no test, or None when it does."""
    if citation.endswith(".py"):
        name = citation.split("/")[-1]
        candidates = [ROOT / citation] if "/" in citation else list(TESTS.rglob(name))
        return None if any(p.exists() for p in candidates) else f"no test file {citation}"
    functions = functions_under_tests()
    if citation.endswith("*"):
        prefix = citation[:-1]
        return None if any(f.startswith(prefix) for f in functions) else \
            f"no test function starts with {prefix}"
    name, _, parameter = citation.partition("[")
    if name not in functions:
        return f"no test function {name} under tests/"
    if parameter:
        known = [ids for ids in functions[name] if ids is not None]
        if known and len(known) == len(functions[name]) and not any(parameter[:-1] in ids for ids in known):
            return f"{name} has no parameter id {parameter[:-1]} (ids: {sorted(set().union(*known))})"
    return None


# --- what the pairing compares ---------------------------------------------------------------

def twin_target(path):
    """The target a Chinese link must have where the English one has `path` (see the docstring)."""
    if path.is_dir() and (path / f"README{TWIN_SUFFIX}").exists():
        return path / f"README{TWIN_SUFFIX}"
    if path.suffix == ".md" and twin_of(path).exists():
        return twin_of(path)
    return path


def pairing_problems(english, chinese):
    """Every difference of cited tests, commands, code blocks and file links between the two."""
    en, zh = rel(english.path), rel(chinese.path)
    problems = []

    cited_en, cited_zh = english.cited_tests(), chinese.cited_tests()
    for name in sorted(cited_en.keys() - cited_zh.keys()):
        problems.append(f"{zh} does not cite `{name}`, which {en} cites (line {cited_en[name]})")
    for name in sorted(cited_zh.keys() - cited_en.keys()):
        problems.append(f"{zh} cites `{name}` (line {cited_zh[name]}), which {en} does not")

    named_en, named_zh = english.named_files(), chinese.named_files()
    for path in sorted(named_en.keys() - named_zh.keys()):
        problems.append(f"{zh} does not name the file `{path}`, which {en} names (line {named_en[path]})")
    for path in sorted(named_zh.keys() - named_en.keys()):
        problems.append(f"{zh} names the file `{path}` (line {named_zh[path]}), which {en} does not")

    commands_en = [c for _, c in english.commands()]
    commands_zh = [c for _, c in chinese.commands()]
    if commands_en != commands_zh:
        diff = "\n".join(difflib.unified_diff(commands_en, commands_zh, en, zh, lineterm="", n=1))
        problems.append(f"the console commands differ (same commands, same order):\n{diff}")

    blocks_en, blocks_zh = english.code_blocks(), chinese.code_blocks()
    for index in range(max(len(blocks_en), len(blocks_zh))):
        if index >= len(blocks_en) or index >= len(blocks_zh):
            extra, where = (blocks_en, en) if index < len(blocks_en) else (blocks_zh, zh)
            problems.append(f"code block {index + 1} ({where}, line {extra[index][2]}) has no "
                            f"counterpart in the other file")
            continue
        (lang_en, code_en, line_en), (lang_zh, code_zh, line_zh) = blocks_en[index], blocks_zh[index]
        if (lang_en, code_en) != (lang_zh, code_zh):
            diff = "\n".join(difflib.unified_diff([f"```{lang_en}", *code_en.splitlines()],
                                                  [f"```{lang_zh}", *code_zh.splitlines()],
                                                  f"{en}:{line_en}", f"{zh}:{line_zh}",
                                                  lineterm="", n=1))
            problems.append(f"code block {index + 1} differs (comments aside):\n{diff}")

    links_en = {}
    for line, target, path, _ in english.file_links():
        if not target.startswith("#"):
            links_en.setdefault(twin_target(path), (line, target))
    links_zh = {}
    for line, target, path, _ in chinese.file_links():
        if not target.startswith("#"):  # a heading of the same page: its anchor is checked alone
            links_zh.setdefault(path, (line, target))
    for path in sorted(links_en.keys() - links_zh.keys()):
        line, target = links_en[path]
        problems.append(f"{zh} has no link to {rel(path)} "
                        f"(matching {en} line {line}: ({target}))")
    for path in sorted(links_zh.keys() - links_en.keys()):
        line, target = links_zh[path]
        problems.append(f"{zh} line {line} links ({target}), which {en} does not link "
                        f"(it would link {rel(twin_of(path)) if path.name.endswith(TWIN_SUFFIX) else rel(path)})")
    return problems


# --- the tests --------------------------------------------------------------------------------

def test_every_english_readme_has_a_chinese_twin_and_no_twin_is_an_orphan():
    missing = [f"{rel(twin_of(doc))} (the twin of {rel(doc)})" for doc in ENGLISH
               if not twin_of(doc).exists()]
    places = [ROOT.glob(f"*{TWIN_SUFFIX}"), (ROOT / "lessons").glob(f"*/*{TWIN_SUFFIX}"),
              (ROOT / "docs").rglob(f"*{TWIN_SUFFIX}"), (ROOT / "notebooks").rglob(f"*{TWIN_SUFFIX}")]
    orphans = [rel(p) for found in places for p in found if twin_of(p) not in ENGLISH]
    assert not missing, "missing Chinese twins: " + ", ".join(missing)
    assert not orphans, "Chinese files with no English document: " + ", ".join(orphans)


@pytest.mark.parametrize("english", PAIRS)
def test_the_first_lines_of_each_twin_link_to_the_other(english):
    chinese = twin_of(english)
    assert chinese.exists(), f"{rel(chinese)} is missing"
    for doc, other in ((english, chinese), (chinese, english)):
        document = read(doc)
        first = [path for line, _, path, _ in document.file_links() if line <= FIRST_LINES]
        assert other in first, f"the first {FIRST_LINES} lines of {rel(doc)} do not link {other.name}"
    heading_en, heading_zh = read(english).lines[0], read(chinese).lines[0]
    assert heading_zh.startswith("# "), f"{rel(chinese)} does not start with a heading"
    lesson = re.match(r"# (\d\d_\w+): ", heading_en)
    if lesson:
        assert re.match(rf"# {lesson[1]}[:：]", heading_zh), \
            f"{rel(chinese)} should start with '# {lesson[1]}：', as {rel(english)} does"


@pytest.mark.parametrize("doc", ALL_DOCS)
def test_every_cited_test_exists(doc):
    absent = [f"line {line}: `{name}`: {why}" for name, line in read(doc).cited_tests().items()
              if (why := missing_test(name))]
    assert not absent, f"{rel(doc)} cites tests that do not exist:\n" + "\n".join(absent)


@pytest.mark.parametrize("doc", ALL_DOCS)
def test_every_linked_file_and_anchor_exists(doc):
    document = read(doc)
    broken = []
    for line, target, path, anchor in document.file_links():
        if not path.exists():
            broken.append(f"line {line}: ({target}): no such file or folder")
        elif anchor and path.suffix == ".md" and anchor not in read(path).anchors():
            broken.append(f"line {line}: ({target}): {rel(path)} has no heading #{anchor}")
    assert not broken, f"{rel(doc)} has broken links:\n" + "\n".join(broken)


@pytest.mark.parametrize("english", PAIRS)
def test_the_twins_cite_the_same_tests_give_the_same_commands_and_link_the_same_files(english):
    chinese = twin_of(english)
    assert chinese.exists(), f"{rel(chinese)} is missing"
    problems = pairing_problems(read(english), read(chinese))
    assert not problems, "\n".join(problems)


def test_the_pairing_fails_when_one_side_drops_a_cited_test_a_command_or_a_link():
    """The check above can fail: remove one thing from the Chinese side of lesson 01, in memory,
    and it reports exactly that (whatever else the pair's own test may be reporting today)."""
    english = read(ROOT / "lessons" / "01_basic" / "README.md")
    chinese_path = twin_of(english.path)
    text = chinese_path.read_text(encoding="utf-8")
    today = set(pairing_problems(english, Document(chinese_path, text)))

    def new_problems(old, new):
        assert old in text, f"{rel(chinese_path)} no longer contains {old!r}: update this test"
        return set(pairing_problems(english, Document(chinese_path, text.replace(old, new)))) - today

    name = "test_the_reply_goes_to_the_sender_alone"
    assert new_problems(f"`{name}`", "（略）") == {
        f"{rel(chinese_path)} does not cite `{name}`, which {rel(english.path)} cites "
        f"(line {english.cited_tests()[name]})"}

    command = "./lesson run 01 --mode threading"
    problems = new_problems(f"$ {command}", "$ ./lesson run 01")
    assert any("console commands differ" in p and f"-{command}" in p for p in problems), problems

    problems = new_problems("(../../tests/test_01_basic.py)", "")
    assert any("has no link to tests/test_01_basic.py" in p for p in problems), problems
