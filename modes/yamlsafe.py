"""Read a YAML document into plain values, keeping where each value was written.

PyYAML's ``safe_load`` silently keeps the last of two equal keys and expands aliases without
limit (a "billion laughs" file exhausts memory). Here the document is composed into nodes first,
checked, then built by hand: duplicate keys, too many aliases, too many expanded nodes and
oversized files are refused with the file, line and column of the offending spot.

Result: ``Document(value, marks)`` where ``marks`` maps a path (tuple of keys / list indexes) to
``(line, column)``, both 1-based, of the value at that path (``key_marks`` the same for keys).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import yaml

MAX_FILE_BYTES = 1 << 20        # a modes file is a few KB; 1 MiB is far beyond any real one
MAX_ALIASES = 100               # aliases (*name) in one document
MAX_EXPANDED_NODES = 100_000    # nodes after expanding every alias
MAX_DEPTH = 64                  # nesting (a recursive alias would be infinite)


@dataclass(frozen=True)
class Problem:
    """One error or warning, located in a file."""
    file: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.message}"

    def to_json(self) -> dict:
        return {"file": self.file, "line": self.line, "column": self.column, "message": self.message}


class ModesFileError(ValueError):
    """The modes file cannot be used; ``problems`` lists every located error."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass
class Document:
    file: str
    value: object
    marks: dict = field(default_factory=dict)
    key_marks: dict = field(default_factory=dict)

    def where(self, path: tuple, key: bool = False) -> tuple[int, int]:
        """(line, column) of ``path``; the nearest enclosing value when that path has no mark."""
        table = self.key_marks if key else self.marks
        probe = tuple(path)
        while probe not in table and probe:
            probe = probe[:-1]
        return table.get(probe, self.marks.get((), (1, 1)))

    def problem(self, path: tuple, message: str, key: bool = False) -> Problem:
        line, column = self.where(path, key)
        return Problem(self.file, line, column, message)


def _mark(node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


class _CountingLoader(yaml.SafeLoader):
    """SafeLoader that counts aliases and nesting while composing (before anything is expanded):
    PyYAML composes recursively, so a file of 10,000 '[' would end in a RecursionError."""

    def __init__(self, stream):
        super().__init__(stream)
        self.alias_count = 0
        self.depth = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self.alias_count += 1
            if self.alias_count > MAX_ALIASES:
                event = self.peek_event()
                raise yaml.composer.ComposerError(
                    None, None, f"more than {MAX_ALIASES} aliases (*name): refused as a possible alias bomb; "
                    "write the values out instead", event.start_mark)
        if self.depth > MAX_DEPTH:  # the same limit as _Builder.build (a path of MAX_DEPTH keys)
            raise yaml.composer.ComposerError(
                None, None, f"values nested more than {MAX_DEPTH} levels deep: refused", self.peek_event().start_mark)
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


# An explicit tag runs any of SafeLoader's constructors on any text, and they fail in many ways:
# '!!int abc' and 'date: 2024-13-45' (ValueError), 5000 digits (ValueError: the int limit),
# '!!timestamp 1' (AttributeError). Every one means "this value cannot be read".
_SCALAR_ERRORS = (Exception,)


def _reason(exc: Exception) -> str:
    return getattr(exc, "problem", None) or str(exc)


def _line_column(text: str, position: int) -> tuple[int, int]:
    """1-based (line, column) of a character index, counting line breaks as YAML does."""
    lines = re.split("\r\n|[\r\n\x85\u2028\u2029]", text[:position])
    return len(lines), len(lines[-1]) + 1


def read_document(text: str | bytes, file: str) -> Document:
    """Parse ``text`` (the file's content); raises ModesFileError with located problems."""
    size = len(text.encode() if isinstance(text, str) else text)
    if size > MAX_FILE_BYTES:
        raise ModesFileError([Problem(file, 1, 1, f"the file is {size:,} bytes; a modes file may be at most "
                                                  f"{MAX_FILE_BYTES:,} bytes. Is this the right file?")])
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ModesFileError([Problem(file, 1, 1, f"the file is not UTF-8 text ({exc}); save it as UTF-8")]) from None
    try:
        loader = _CountingLoader(text)  # checks every character first
    except yaml.reader.ReaderError as exc:
        line, column = _line_column(text, exc.position)
        raise ModesFileError([Problem(file, line, column, f"character U+{exc.character:04X} is not allowed in a YAML "
                                                          "file; remove it (or write it as an escape in quotes)")]) from None
    try:
        try:
            root = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
            problem = exc.problem or str(exc)
            context = f" ({exc.context})" if exc.context and exc.context != problem else ""
            raise ModesFileError([Problem(file, line, column, f"YAML syntax: {problem}{context}")]) from None
        except yaml.YAMLError as exc:
            raise ModesFileError([Problem(file, 1, 1, f"YAML syntax: {exc}")]) from None
        doc = Document(file, None)
        if root is None:
            return doc
        builder = _Builder(loader, doc)
        doc.value = builder.build(root, ())
        if builder.problems:
            raise ModesFileError(builder.problems)
        return doc
    finally:
        loader.dispose()


class _Builder:
    def __init__(self, loader, doc: Document):
        self.loader = loader
        self.doc = doc
        self.expanded = 0
        self.problems: list[Problem] = []

    def _fail(self, node, message: str):
        line, column = _mark(node)
        raise ModesFileError([*self.problems, Problem(self.doc.file, line, column, message)])

    def build(self, node, path: tuple):
        self.expanded += 1
        if self.expanded > MAX_EXPANDED_NODES:
            self._fail(node, f"the document expands to more than {MAX_EXPANDED_NODES:,} values "
                             "(aliases nested in aliases): refused as a possible alias bomb")
        if len(path) > MAX_DEPTH:
            self._fail(node, f"values nested more than {MAX_DEPTH} levels deep (a recursive alias?): refused")
        self.doc.marks.setdefault(path, _mark(node))
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node, "value")
        if isinstance(node, yaml.SequenceNode):
            return [self.build(child, path + (index,)) for index, child in enumerate(node.value)]
        if isinstance(node, yaml.MappingNode):
            result: dict = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    self._fail(key_node, "a key must be a plain name, not a list or a mapping")
                if key_node.tag == "tag:yaml.org,2002:merge":
                    self._fail(key_node, "merge keys ('<<') are not supported in a modes file; write the keys out")
                key = self._scalar(key_node, "key")
                if not isinstance(key, (str, int, float, bool)) and key is not None:
                    self._fail(key_node, f"a key must be a plain name, got {key!r}")
                key = str(key) if key is not None else "null"
                if key in result:
                    first_line, first_column = self.doc.key_marks[path + (key,)]
                    line, column = _mark(key_node)
                    self.problems.append(Problem(
                        self.doc.file, line, column,
                        f"duplicate key '{key}' (first defined at line {first_line}, column {first_column}); "
                        "YAML would silently keep only the last one: rename or remove one of them"))
                    continue
                self.doc.key_marks[path + (key,)] = _mark(key_node)
                result[key] = self.build(value_node, path + (key,))
            return result
        self._fail(node, f"unsupported YAML node {type(node).__name__}")

    def _scalar(self, node, what: str):
        try:
            return self.loader.construct_object(node, deep=True)
        except _SCALAR_ERRORS as exc:
            tag = node.tag.replace("tag:yaml.org,2002:", "!!")  # e.g. a date-like '2024-13-45' reads as !!timestamp
            self._fail(node, f"cannot read this {what} as {tag}: {_reason(exc)}; put text in quotes, "
                             "or write a plain number")
