"""A griffe extension for jaxconv's API reference: its lazy exports, and its docstrings' reST read as Markdown.

* ``jaxconv/__init__.py`` loads its public names on first use (``_EXPORTS``, a dict of name -> module), which
  static analysis cannot see; the extension adds each as an alias, so ``::: jaxconv.conv`` documents
  ``jaxconv._api.conv`` under the name users call. A public function a factory builds at import
  (``conv1d = _conv_of_rank(1)``) is read from the imported module, where its signature and docstring exist.
* The docstrings are Google style with a few reStructuredText habits that Markdown would garble: roles
  (``:func:`name```), literal blocks after ``::``, ``>>>`` examples (Markdown reads ``>`` as a quote),
  simple tables (``====  ====``), products such as ``N*OH*OW`` (read as emphasis) and arguments documented
  together (``stride, padding: ...``, which Google style does not know). They become code spans, fenced
  blocks, pipe tables, escaped stars and one entry per argument.
"""

from __future__ import annotations

import ast
import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:func|class|mod|data|attr|meth|exc|obj|const):`(~?)([^`]+)`")
_BORDER = re.compile(r"^( *)=+( +=+)+ *$")
_PRODUCT = re.compile(r"(?<=[\w)])\*(?=[\w(])")
_CODE_SPAN = re.compile(r"(`+[^`]*`+)")
_SECTION = re.compile(r"(Args|Arguments|Parameters|Attributes|Other Parameters):$")
_NAMES = re.compile(r"([\w*]+(?:\s*,\s*[\w*]+)+)\s*:(.*)$")


def _role(match: re.Match) -> str:
    short, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if short else target}`"


def _columns(border: str) -> list[tuple[int, int]]:
    return [m.span() for m in re.finditer(r"=+", border)]


def _cells(line: str, columns: list[tuple[int, int]]) -> list[str]:
    """A row of a simple table: each column from its start to the next one's (the last to the line's end)."""
    starts = [start for start, _ in columns] + [None]
    return [line[starts[i] : starts[i + 1]].strip().replace("|", "\\|") for i in range(len(columns))]


def _table(lines: list[str], columns: list[tuple[int, int]]) -> list[str]:
    header, *rows = (_cells(line, columns) for line in lines if line.strip() and not _BORDER.match(line))
    body: list[list[str]] = []
    for row in rows:
        if not row[0] and body:  # a blank first cell continues the row above
            body[-1] = [" ".join(filter(None, pair)) for pair in zip(body[-1], row)]
        else:
            body.append(row)
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return out + ["| " + " | ".join(row) + " |" for row in body]


def _tables(lines: list[str]) -> list[str]:
    """reST simple tables (border, header, border, rows, border) as Markdown pipe tables."""
    out, i = [], 0
    while i < len(lines):
        borders = [j for j in range(i, len(lines)) if _BORDER.match(lines[j])][:3] if _BORDER.match(lines[i]) else []
        if len(borders) == 3 and borders[1] - borders[0] == 2:
            out += _table(lines[borders[0] + 1 : borders[2]], _columns(lines[i]))
            i = borders[2] + 1
        else:
            out.append(lines[i])
            i += 1
    return out


def _doctests(lines: list[str]) -> list[str]:
    """Each run of ``>>>`` lines and their output, up to a blank line, as a fenced ``pycon`` block."""
    out, i, fenced = [], 0, False
    while i < len(lines):
        line = lines[i]
        fenced ^= line.lstrip().startswith("```")
        if line.lstrip().startswith(">>>") and not fenced:
            indent = line[: len(line) - len(line.lstrip())]
            out += ["", f"{indent}```pycon"]
            while i < len(lines) and lines[i].strip():
                out.append(lines[i])
                i += 1
            out += [f"{indent}```", ""]
        else:
            out.append(line)
            i += 1
    return out


def _literal_blocks(lines: list[str]) -> list[str]:
    """``text::`` then an indented block: ``text:`` and the block fenced (it is a command or a Python session)."""
    out, i = [], 0
    while i < len(lines):
        line = lines[i]
        if line.rstrip().endswith("::") and not line.strip().startswith(":"):
            out.append(line.rstrip()[:-1])
            indent = len(line) - len(line.lstrip())
            j = i + 1
            while j < len(lines) and not lines[j].strip():
                j += 1
            block = []
            while j < len(lines) and (not lines[j].strip() or len(lines[j]) - len(lines[j].lstrip()) > indent):
                block.append(lines[j])
                j += 1
            while block and not block[-1].strip():
                block.pop()
            if block:
                margin = min(len(b) - len(b.lstrip()) for b in block if b.strip())
                fence = " " * indent + "```"
                out += ["", fence] + [" " * indent + b[margin:] for b in block] + [fence, ""]
                i = j
                continue
        out.append(line)
        i += 1
    return out


def _products(lines: list[str]) -> list[str]:
    """``N*OH*OW`` outside code: each ``*`` between operands escaped, or Markdown reads ``*OH*`` as emphasis."""
    out, fenced = [], False
    for line in lines:
        fenced ^= line.lstrip().startswith("```")
        if not fenced and "*" in line:
            parts = _CODE_SPAN.split(line)  # odd parts are code spans
            parts[::2] = [_PRODUCT.sub(r"\\*", part) for part in parts[::2]]
            line = "".join(parts)
        out.append(line)
    return out


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _grouped_args(lines: list[str]) -> list[str]:
    """``a, b: text`` in an ``Args:`` section (names may wrap after a comma) as one item per name."""
    out, i, section, item = [], 0, None, None
    while i < len(lines):
        line = lines[i]
        if _SECTION.match(line.strip()):
            section, item = _indent(line), None
        elif section is not None and line.strip() and _indent(line) <= section:
            section = None
        elif section is not None and line.strip():
            item = _indent(line) if item is None else item
            head, j = line.strip(), i
            while head.endswith(",") and j + 1 < len(lines) and _indent(lines[j + 1]) == item:
                j += 1
                head += " " + lines[j].strip()
            names = _NAMES.match(head) if _indent(line) == item else None
            if names:
                k = j + 1
                while k < len(lines) and lines[k].strip() and _indent(lines[k]) > item:
                    k += 1
                for name in names.group(1).split(","):
                    out += [" " * item + f"{name.strip()}:{names.group(2)}", *lines[j + 1 : k]]
                i = k
                continue
        out.append(line)
        i += 1
    return out


def markdown(text: str) -> str:
    """A docstring's reST habits in Markdown (see the module docstring)."""
    lines = _doctests(_literal_blocks(_tables(_grouped_args(text.splitlines()))))
    return _ROLE.sub(_role, "\n".join(_products(lines)))


class JaxconvDocs(griffe.Extension):
    """Adds ``jaxconv``'s lazy exports as aliases, and reads every docstring as Markdown."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown(obj.docstring.value)

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        if pkg.name != "jaxconv":
            return
        exports = ast.literal_eval(str(pkg.members["_EXPORTS"].value))
        for name, module in exports.items():
            _made_at_import(pkg, module, name)
            pkg.set_member(name, griffe.Alias(name, f"{module}.{name}", parent=pkg))


def _made_at_import(pkg: griffe.Module, module: str, name: str) -> None:
    """A public function built by a factory at import (``conv1d = _conv_of_rank(1)``), read from the live object.

    Static analysis sees an attribute with no docstring; inspecting the imported module gives the function, its
    signature and the docstring the factory wrote.
    """
    static = pkg.modules_collection[module]
    if not static.members[name].is_attribute:
        return
    live = griffe.inspect(module)[name]
    if live.is_function and live.docstring is not None:
        live.docstring.value = markdown(live.docstring.value)
        static.set_member(name, live)
