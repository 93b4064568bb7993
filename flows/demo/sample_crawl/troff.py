"""A small regex troff reader: man(7) and mdoc(7) pages to headings and paragraphs.

Not a typesetter: it keeps the words and the section structure, which is all a web page
made from a man page needs. groff would be exact but costs ~50 ms a page; this is ~1 ms.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

#: troff special characters (groff_char(7)) that occur in Debian's man pages.
NAMED_CHARS = {
    "em": "\u2014", "en": "\u2013", "hy": "-", "mi": "-", "aq": "'", "dq": '"', "lq": "\u201c",
    "rq": "\u201d", "oq": "\u2018", "cq": "\u2019", "bu": "\u2022", "co": "\u00a9", "rg": "\u00ae",
    "tm": "\u2122", "de": "\u00b0", "mu": "\u00d7", "ti": "~", "ha": "^", "rs": "\\", "ga": "`",
    "aa": "\u00b4", "Fo": "\u00ab", "Fc": "\u00bb", "fo": "\u2039", "fc": "\u203a", ">=": "\u2265",
    "<=": "\u2264", "sc": "\u00a7", "lB": "[", "rB": "]", "ba": "|", "at": "@", "sh": "#",
}
#: Composite glyphs \(:u \('e \(`a \(^o \(~n \(,c: an accent mark then a base letter.
COMBINING_MARKS = {":": "\u0308", "'": "\u0301", "`": "\u0300", "^": "\u0302", "~": "\u0303", ",": "\u0327"}
#: Strings that man page preambles define (.ds) for quotes and dashes; other strings are dropped.
STRINGS = {"Aq": "'", 'L"': '"', 'R"': '"', "C'": "'", "C`": "'", "--": "\u2014", "lq": "\u201c", "rq": "\u201d",
           "R": "\u00ae", "Tm": "\u2122"}
#: One-character escapes; any other `\x` stands for `x`.
SIMPLE_ESCAPES = {"-": "-", "e": "\\", "\\": "\\", " ": " ", "~": " ", "0": " ", "&": "", "|": "", "^": "",
                  "%": "", "c": "", ":": "", "/": "", ",": "", ")": "", "t": " "}
ESCAPE = re.compile(
    r"\\(?:\((?P<char2>..)|\[(?P<charn>[^\]]*)\]"  # \(em  \[em]
    r"|\*(?:\[(?P<stringn>[^\]]*)\]|\((?P<string2>..)|(?P<string1>.))"  # \*(Aq  \*[lq]
    r"|[nfFgkmMYV](?:\[[^\]]*\]|\(..|.)"  # registers, fonts, colours: dropped
    r"|s[-+]?\d+|s\[[^\]]*\]"  # size changes
    r"|[hvwoXDlLNbxZAbBCR]'[^']*'"  # motions and other quoted-argument escapes
    r"|(?P<simple>.))",
    re.DOTALL,
)
REQUEST = re.compile(r"^[.'][ \t]*(?P<name>\S+)[ \t]*(?P<args>.*)$")
ARGUMENT = re.compile(r'"((?:[^"]|"")*)"|(\S+)')
BREAKS = frozenset({"PP", "LP", "P", "TP", "IP", "HP", "sp", "br", "RS", "RE", "Pp", "It", "Bl", "El", "Bd", "Ed",
                    "EX", "EE", "nf", "fi", "TQ", "PD", "in", "ti", "Sp", "Vb", "Ve"})
#: Upper-case macros that carry no text (pod2man's index entries).
SILENT_MACROS = frozenset({"IX", "UC", "PD", "DT", "Dd", "Os"})
HEADINGS = {"SH": "h2", "Sh": "h2", "SS": "h3", "Ss": "h3"}
#: Font macros whose arguments alternate fonts with no space between them (man(7)).
ALTERNATING = frozenset({"BR", "BI", "IB", "IR", "RB", "RI"})
#: mdoc(7) macros that may appear as arguments of other mdoc macros.
MDOC_CALLABLE = frozenset({"Ad", "An", "Ap", "Aq", "Ar", "Bo", "Bc", "Bq", "Brc", "Bro", "Cm", "Dq", "Dv", "Em",
                           "Er", "Ev", "Fa", "Fl", "Fn", "Ft", "Ic", "Li", "Nm", "No", "Ns", "Oc", "Oo", "Op",
                           "Pa", "Pc", "Po", "Pq", "Ql", "Qq", "Sq", "Sy", "Va", "Xc", "Xo", "Xr"})
#: Requests that open a block running to a line with "..", whose content is not text.
DEFINITIONS = frozenset({"de", "de1", "am", "ig", "ds1"})


@dataclass(frozen=True, kw_only=True)
class ManPage:
    title: str
    blocks: list[tuple[str, str]]  # (tag, text): tag is h2, h3 or p


def parse_man(source: str) -> ManPage:
    """Turn troff source into a title and (tag, text) blocks; empty blocks are dropped."""
    title, blocks, paragraph = "", [], []
    pending_heading, in_definition = None, False
    for line in source.splitlines():
        if in_definition:
            in_definition = not line.startswith("..")
            continue
        if _is_comment(line):
            continue
        request = REQUEST.match(line)
        if request is None:
            text = inline_text(line)
            if pending_heading:
                blocks.append((pending_heading, text.strip()))
                pending_heading = None
            else:
                paragraph.append(text)
            continue
        name, args = request["name"], _arguments(request["args"])
        if name in DEFINITIONS:
            in_definition = True
        elif name == "TH" or name == "Dt":
            title = f"{args[0]}({args[1]})" if len(args) > 1 else " ".join(args)
        elif name in HEADINGS or name in BREAKS:
            _flush(paragraph, blocks)
            if name in HEADINGS:
                heading = inline_text(" ".join(args)).strip()
                if heading:
                    blocks.append((HEADINGS[name], heading))
                else:  # `.SH` alone: the heading is the next text line
                    pending_heading = HEADINGS[name]
            elif name == "IP" and args:
                paragraph.append(inline_text(args[0]))
        elif name[:1].isupper() and name not in SILENT_MACROS:  # font and mdoc macros carry text; lower-case requests do not
            paragraph.append(inline_text(_macro_text(name, args)))
    _flush(paragraph, blocks)
    return ManPage(title=title, blocks=[b for b in blocks if b[1]])


def _macro_text(name: str, args: list[str]) -> str:
    """The words a macro prints: mdoc lines nest callable macros (`.Fl c Ar cipher`) in their arguments."""
    if name in ALTERNATING:
        return "".join(args)
    words, flag = [], name == "Fl"
    for arg in args:
        if arg in MDOC_CALLABLE:
            flag = arg == "Fl"
        else:
            words.append(("-" if flag else "") + arg)
            flag = False
    return " ".join(words)


def inline_text(line: str) -> str:
    return ESCAPE.sub(_replace_escape, line)


def _replace_escape(match: re.Match) -> str:
    if match["simple"] is not None:
        return SIMPLE_ESCAPES.get(match["simple"], match["simple"])
    string = match["string2"] or match["stringn"] or match["string1"]
    if string is not None:
        return STRINGS.get(string, "")
    name = match["char2"] or match["charn"]
    if name is None:
        return ""
    if name in NAMED_CHARS:
        return NAMED_CHARS[name]
    if len(name) == 2 and name[0] in COMBINING_MARKS:
        return unicodedata.normalize("NFC", name[1] + COMBINING_MARKS[name[0]])
    return "\u00df" if name == "ss" else ""


def _arguments(args: str) -> list[str]:
    return [bare or quoted.replace('""', '"') for quoted, bare in ARGUMENT.findall(args)]


def _is_comment(line: str) -> bool:
    return line.startswith(('.\\"', "'\\\"", '\\"', ".\\#", "\\#")) or line.strip() in {".", "'"}


def _flush(paragraph: list[str], blocks: list[tuple[str, str]]) -> None:
    text = " ".join(part.strip() for part in paragraph if part.strip())
    if text:
        blocks.append(("p", text))
    paragraph.clear()
