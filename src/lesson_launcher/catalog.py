"""Find lessons and their demos on disk, without importing them.

A lesson is a folder ``lessons/NN_topic/``. Each ``*.py`` file in it that
defines an app is a demo; ``app.py``, where there is one, is the lesson's
main demo, run when no demo is named.
The first heading of the lesson's README.md is its one-line description.
"""
import ast
import os
import re
from dataclasses import dataclass
from pathlib import Path

LESSON_NAME = re.compile(r"^(?P<number>\d\d)_(?P<topic>\w+)$")


class NotFound(LookupError):
    """A lesson or demo name that does not exist; the message says what does."""


def repository_root() -> Path:
    """The folder holding ``lessons/``: $LESSON_ROOT (set by ./lesson) or this checkout."""
    if os.environ.get("LESSON_ROOT"):
        return Path(os.environ["LESSON_ROOT"]).resolve()
    return Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Lesson:
    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def description(self) -> str:
        """The README's first heading, without the leading ``# NN_topic: ``."""
        readme = self.path / "README.md"
        if readme.exists():
            for line in readme.read_text(encoding="utf-8").splitlines():
                if line.startswith("# "):
                    return line[2:].split(": ", 1)[-1].strip()
        return ""

    def demos(self) -> dict:
        """Demo name -> file, for every ``*.py`` in the lesson that defines ``create_app``."""
        found = {}
        for file in sorted(self.path.glob("*.py")):
            if not file.name.startswith("_") and "def create_app" in file.read_text(encoding="utf-8"):
                found[file.stem] = file
        return found

    def demo(self, name=None) -> tuple:
        """(name, file) of one demo; ``None`` means ``app``, or the only demo."""
        demos = self.demos()
        if name is None:
            if "app" in demos:
                return "app", demos["app"]
            if len(demos) == 1:
                return next(iter(demos.items()))
            raise NotFound(f"lesson {self.name} has several demos, name one: {', '.join(demos)}")
        if name not in demos:
            raise NotFound(f"lesson {self.name} has no demo {name!r}; its demos: {', '.join(demos)}")
        return name, demos[name]


def describe_demo(file: Path) -> str:
    """First line of the demo module's docstring."""
    doc = ast.get_docstring(ast.parse(file.read_text(encoding="utf-8"))) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def all_lessons(root: Path = None) -> list:
    folder = (root or repository_root()) / "lessons"
    return [Lesson(p) for p in sorted(folder.iterdir()) if p.is_dir() and LESSON_NAME.match(p.name)]


def find_lesson(key: str, root: Path = None) -> Lesson:
    """Accepts ``01``, ``01_basic`` or ``basic``."""
    lessons = all_lessons(root)
    for lesson in lessons:
        match = LESSON_NAME.match(lesson.name)
        if key in (lesson.name, match["number"], match["topic"]):
            return lesson
    known = ", ".join(lesson.name for lesson in lessons)
    raise NotFound(f"no lesson {key!r}; the lessons are: {known}")
