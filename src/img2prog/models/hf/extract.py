"""Getting the program out of a model's free-text reply.

Chat models rarely answer with the bare program. Replies wrap it in code fences, add prose
before and after, quote parts of it in explanations, offer several attempts, or stop mid-way
when they hit the token limit. The rule below decides, deterministically, which program a
reply stands for. It is the same rule everywhere (zero-shot evaluation, fine-tuned models,
search), so scores are comparable.

The rule (for s-expression languages such as csg2d)
---------------------------------------------------
1. **Candidates** are the parenthesised spans of the reply that open with a shape or
   operation keyword — ``(Circle``, ``(Quad``, ``(+``, ``(-`` — and are not nested inside
   another such span. Prose parentheses do not count, so a program inside "(which is ...)" is
   still found; an expression nested in a *broken* one (``(+ (Circle 3 8 8))``) is part of a
   wrong answer, not an answer. A span still open at the end of the reply is a candidate for
   rule 6 only.
2. **Lenient spelling.** Before parsing, a candidate gets these fixes, each recorded in
   :attr:`Extraction.fixes`: keywords in the wrong case (``circle``, ``QUAD``), commas between
   numbers (``(Circle 3, 8, 8)``), integral decimals (``8.0``) and typographic minus signs.
   These cannot change which program was meant: the language has only these keywords and
   whole numbers. Anything else that does not parse is not a program.
3. **Quoted parts lose.** A valid candidate whose program is a proper part (sub-expression) of
   another valid candidate is dropped: explanations quote pieces of the answer ("``(Circle 2
   4 10)`` is the left eye"), and the piece is not the answer.
4. **Code blocks win.** If any remaining candidate lies inside a Markdown code block
   (```` ``` ````), candidates outside code blocks are dropped: the prompt asks for a code
   block, so that is where the answer is.
5. **The last one wins.** Of what remains, the last candidate in the reply is the answer:
   models revise ("Actually, a better match is ...") and put final answers last.
6. **Truncation.** If no complete candidate parses and the reply ends inside an unclosed
   expression (the generation hit ``max_new_tokens``, or a ``)`` was forgotten before more
   prose), its complete part is salvaged: it is read up to the end or the first token that cannot
   continue it, unfinished primitives are dropped, open operations are closed, an operation
   left with one operand becomes that operand and one with none disappears. The result is
   marked ``repaired``; pass ``repair=False`` for strictness.
7. **Nothing found** gives ``program=None`` — counted as unparsable, never silently as the
   empty program. The one way to answer "the empty program" is an empty code block.

:func:`extract_all` is the variant for replies that list several programs on purpose (the
model mutator): every distinct valid candidate not nested inside another one, in order.

The rule for script languages (cadquery)
----------------------------------------
Languages whose programs are scripts of statements over several lines (those in
:data:`SCRIPT_LANGUAGES`) cannot be found by their parentheses. Their replies are read by the
same decisions, applied to blocks of lines, and checked by the language's own parser
(``language.canonical``), so the answer is always the canonical script:

1. **Candidates** are the bodies of the Markdown code blocks (any language tag or none; a block
   still open at the end of the reply runs to the end) and, outside code blocks, every run of
   consecutive lines that look like code: blank lines, comments, ``import``/``from`` lines,
   assignments ``name = ...`` and indented or continuation lines. Prose lines ("Here is the
   script:") end a run, so a bare script with prose before or after it is still found.
2. **Lenient layout.** Before parsing, a candidate gets these fixes, each recorded in
   :attr:`Extraction.fixes`: a common indentation is removed (``"indent"``) and whole-line
   ``show_object(...)`` calls, which only display the part in CadQuery's viewers, are dropped
   (``"show_object"``). Neither changes the part. Anything else that does not parse is not a
   program.
3. (Quoted parts do not arise: a single line of a script is not a program.)
4. **Code blocks win** and 5. **the last one wins**, exactly as above.
6. **Truncation.** If no candidate parses and the reply ends inside the last candidate —
   an unclosed code block, or code lines that are not complete Python (an unclosed
   parenthesis...) — the longest prefix of whole lines that parses is salvaged and marked
   ``repaired``: the last line is dropped first unless it ended with a newline (its last
   number may be cut short), then lines are dropped from the end until the rest is a
   program. A complete script that fails to parse is never "repaired" into a shorter one.
7. **Nothing found** gives ``program=None``, as above. An empty code block is the empty
   program only if the language has one (cadquery does not: a part needs an extrusion).
"""

from __future__ import annotations

import ast
import re
import textwrap
from dataclasses import dataclass, field

from img2prog.lang import Language, ProgramError, get_language

_FENCE = re.compile(r"```[^\n`]*\n?(.*?)(?:```|\Z)", re.DOTALL)
_HEAD = re.compile(r"\(\s*(circle|quad|\+|-|−|–)(?![A-Za-z])", re.IGNORECASE)
_KEYWORD = re.compile(r"\(\s*(circle|quad)(?![A-Za-z])", re.IGNORECASE)
_COMMA = re.compile(r"(?<=\d)\s*,\s*(?=\d)")
_DECIMAL = re.compile(r"(?<![\d.])(\d+)\.0+(?![\d.])")
_TYPO_MINUS = re.compile(r"\(\s*[−–]")
_TOKENS = re.compile(r"\(|\)|[+\-]|\d+|[A-Za-z]+|\S")

#: languages whose programs are multi-line scripts, read by the script rule (module docstring);
#: every other language is read by the s-expression rule
SCRIPT_LANGUAGES = frozenset({"cadquery"})
#: a line that may belong to a script outside a code block (rule 1 for scripts)
_CODE_LINE = re.compile(r"(?:import\s|from\s|[A-Za-z_]\w*\s*=(?!=)|#|[ \t]|[)\].]|\r?$)")
_SHOW_OBJECT = re.compile(r"^[ \t]*show_object[ \t]*\(.*\)[ \t]*;?[ \t]*(?:#.*)?(?:\r?\n|\Z)", re.MULTILINE)
#: most prefixes tried when salvaging a truncated script (bounds the work on huge replies)
_MAX_SALVAGE_TRIES = 512


@dataclass(frozen=True)
class Extraction:
    """The outcome of reading one reply.

    ``program`` is the canonical text of the chosen program, or None when the reply holds
    none. ``span`` is the raw text it came from, ``in_code_block`` whether that was inside a
    code fence, ``repaired`` whether it was salvaged from a truncated reply, ``fixes`` the
    lenient-spelling fixes applied (``"case"``, ``"commas"``, ``"decimals"``, ``"minus"``)
    and ``candidates`` how many valid complete candidates the reply had.
    """

    program: str | None
    span: str | None = None
    in_code_block: bool = False
    repaired: bool = False
    fixes: tuple[str, ...] = ()
    candidates: int = 0

    @property
    def ok(self) -> bool:
        return self.program is not None


@dataclass
class _Candidate:
    start: int
    end: int  # exclusive; == len(text) for an unclosed span
    closed: bool
    text: str
    fenced: bool
    program: str | None = None  # canonical text when valid
    fixes: tuple[str, ...] = field(default_factory=tuple)


def normalize(span: str) -> tuple[str, tuple[str, ...]]:
    """Apply the lenient-spelling fixes of rule 2; return the text and the fixes used."""
    fixes = []
    fixed = _KEYWORD.sub(lambda m: "(" + m.group(1).capitalize(), span)
    if fixed != span:
        fixes.append("case")
    new = _COMMA.sub(" ", fixed)
    if new != fixed:
        fixes.append("commas")
    fixed = new
    new = _DECIMAL.sub(r"\1", fixed)
    if new != fixed:
        fixes.append("decimals")
    fixed = new
    new = _TYPO_MINUS.sub("(-", fixed)
    if new != fixed:
        fixes.append("minus")
    return new, tuple(fixes)


def _fence_ranges(text: str) -> list[tuple[int, int]]:
    return [(m.start(1), m.end(1)) for m in _FENCE.finditer(text)]


def _in_ranges(pos: int, ranges: list[tuple[int, int]]) -> bool:
    return any(a <= pos < b for a, b in ranges)


def _spans(text: str, fences: list[tuple[int, int]]) -> list[_Candidate]:
    """All parenthesised spans that open with a keyword, closed or running to the end."""
    out: list[_Candidate] = []
    stack: list[int] = []
    for i, ch in enumerate(text):
        if ch == "(":
            stack.append(i)
        elif ch == ")" and stack:
            start = stack.pop()
            if _HEAD.match(text, start):
                out.append(_Candidate(start, i + 1, True, text[start : i + 1], _in_ranges(start, fences)))
    # Spans still open at the end: the reply was cut inside them (or they never close).
    for start in stack:
        if _HEAD.match(text, start):
            out.append(_Candidate(start, len(text), False, text[start:], _in_ranges(start, fences)))
    out.sort(key=lambda c: (c.start, -c.end))
    return out


def _parse(language: Language, cand: _Candidate) -> None:
    text, fixes = normalize(cand.text)
    try:
        cand.program = language.canonical(text)
    except ProgramError:
        cand.program = None
        return
    cand.fixes = fixes


def salvage(text: str, language: Language | str = "csg2d") -> str | None:
    """The complete part of an unclosed s-expression (rule 6), or None if nothing is left.

    Reads tokens until the text ends or a token cannot continue the expression (prose after
    a forgotten ``)``), then closes what is open, innermost first: an unfinished primitive is
    dropped, an operation with two or more finished operands is closed, one with a single
    operand becomes that operand, one with none disappears.
    """
    language = get_language(language) if isinstance(language, str) else language
    toks = _TOKENS.findall(normalize(text)[0])
    # frames: [head, items]; items are digit strings (primitives) or finished child texts
    stack: list[list] = []
    i = 0
    while i < len(toks):
        tok = toks[i]
        if tok == "(":
            head = toks[i + 1] if i + 1 < len(toks) else None
            if head not in ("Circle", "Quad", "+", "-"):
                break
            stack.append([head, []])
            i += 2
            continue
        if not stack:
            break
        head, items = stack[-1]
        if tok == ")":
            if head in ("+", "-") and len(items) < 2:
                break
            stack.pop()
            node = f"({head} {' '.join(items)})"
            if not stack:
                return _canonical_or_none(language, node)
            stack[-1][1].append(node)
        elif tok.isdigit() and head in ("Circle", "Quad"):
            items.append(tok)
        else:
            break
        i += 1
    child: str | None = None
    while stack:
        head, items = stack.pop()
        if head in ("Circle", "Quad"):
            child = None  # unfinished primitive: its last number may itself be cut short
            continue
        items = items + ([child] if child is not None else [])
        child = f"({head} {' '.join(items)})" if len(items) >= 2 else (items[0] if items else None)
    return None if child is None else _canonical_or_none(language, child)


def _canonical_or_none(language: Language, text: str) -> str | None:
    try:
        return language.canonical(text)
    except ProgramError:
        return None


def _outermost(text: str, language: Language) -> tuple[list[_Candidate], list[tuple[int, int]]]:
    """The keyword spans not nested inside another keyword span, parsed (rule 1)."""
    fences = _fence_ranges(text)
    outer: list[_Candidate] = []
    end = -1
    for c in _spans(text, fences):  # sorted by start, longest first
        if c.start >= end:
            outer.append(c)
            end = c.end
    for c in outer:
        if c.closed:
            _parse(language, c)
    return outer, fences


def extract(reply: str, language: Language | str = "csg2d", *, repair: bool = True) -> Extraction:
    """The program a reply stands for, by the rule in this module's docstring."""
    language = get_language(language) if isinstance(language, str) else language
    if not isinstance(reply, str):
        raise TypeError(f"reply must be a str, got {type(reply).__name__}")
    if language.name in SCRIPT_LANGUAGES:
        return _extract_script(reply, language, repair)
    outer, fences = _outermost(reply, language)
    valid = [c for c in outer if c.program is not None]
    if valid:
        # Rule 3: drop programs that are proper parts of another valid program. Canonical text
        # is compositional, so a sub-expression's text is a substring of its parent's text (and
        # a substring that starts with '(' and is balanced is a sub-expression).
        programs = {c.program for c in valid}
        kept = [c for c in valid if not any(len(p) > len(c.program) and c.program in p for p in programs)]
        pool = [c for c in kept if c.fenced] or kept  # rule 4
        best = pool[-1]  # rule 5: spans are in order of appearance
        return Extraction(best.program, best.text, best.fenced, False, best.fixes, len(valid))
    # Rule 6: salvage the unclosed span the generation was cut in (it is the last outermost one).
    if repair and outer and not outer[-1].closed:
        cut = outer[-1]
        salvaged = salvage(cut.text, language)
        if salvaged:
            return Extraction(salvaged, cut.text, cut.fenced, True, normalize(cut.text)[1], 0)
    # Rule 7: an empty code block is the empty program; anything else is no program.
    if any(not reply[a:b].strip() for a, b in fences):
        return Extraction("", "", True, False, (), 0)
    return Extraction(None)


def extract_all(reply: str, language: Language | str = "csg2d") -> list[str]:
    """Every distinct valid program in a reply, in order of appearance: the outermost
    expressions that parse (for replies that list programs, e.g. the model mutator's)."""
    language = get_language(language) if isinstance(language, str) else language
    if language.name in SCRIPT_LANGUAGES:
        return list(dict.fromkeys(c.program for c in _script_candidates(reply, language) if c.program is not None))
    outer, _ = _outermost(reply, language)
    out: list[str] = []
    for c in outer:
        if c.program is not None and c.program not in out:
            out.append(c.program)
    return out


# ----------------------------------------------------------------------------------------
# the script rule (cadquery)
# ----------------------------------------------------------------------------------------

def normalize_script(text: str) -> tuple[str, tuple[str, ...]]:
    """Apply the lenient-layout fixes of the script rule; return the text and the fixes used."""
    fixes = []
    fixed = textwrap.dedent(text)
    if fixed != text:
        fixes.append("indent")
    new = _SHOW_OBJECT.sub("", fixed)
    if new != fixed:
        fixes.append("show_object")
    return new, tuple(fixes)


def _script_candidates(reply: str, language: Language) -> list[_Candidate]:
    """Code-block bodies and bare code-line runs, in order of appearance, parsed (rules 1-2).

    ``closed`` is False for a candidate the reply ends inside (an unclosed code block, or a
    bare run that reaches the end of the reply).
    """
    out: list[_Candidate] = []
    blocks = list(_FENCE.finditer(reply))
    for m in blocks:
        closed = m.end(0) > m.end(1)  # the closing ``` was found
        out.append(_Candidate(m.start(1), m.end(1), closed, m.group(1), True))
    spans = [(m.start(), m.end()) for m in blocks]
    run: list[int] = []  # [start, end] of the current run of code lines
    pos = 0

    def close_run() -> None:
        if run:
            a, b = run
            text = reply[a:b]
            lead = len(text) - len(text.lstrip("\r\n"))
            body = text.strip("\r\n")
            if body.strip():
                at_end = not reply[b:].strip()
                out.append(_Candidate(a + lead, a + lead + len(body), not at_end, body, False))
            run.clear()

    for line in reply.splitlines(keepends=True):
        start, end = pos, pos + len(line)
        pos = end
        if any(a < end and start < b for a, b in spans) or not _CODE_LINE.match(line):
            close_run()
            continue
        if run:
            run[1] = end
        else:
            run.extend((start, end))
    close_run()
    out.sort(key=lambda c: c.start)
    for c in out:
        text, fixes = normalize_script(c.text)
        c.program = _canonical_or_none(language, text)
        c.fixes = fixes if c.program is not None else ()
    return out


def _incomplete_python(text: str) -> bool:
    try:
        ast.parse(text)
    except SyntaxError:
        return True
    except (ValueError, RecursionError, MemoryError):
        return False
    return False


def salvage_script(text: str, language: Language | str = "cadquery") -> str | None:
    """The longest prefix of whole lines of a truncated script that is a program (rule 6 for
    scripts), canonical, or None. The last line is dropped first unless ``text`` ends with a
    newline: the cut may have shortened it (a number, a name) into something else valid."""
    language = get_language(language) if isinstance(language, str) else language
    fixed, _ = normalize_script(text)
    lines = fixed.splitlines()
    if not fixed.endswith("\n") and lines:
        lines.pop()
    for k in range(len(lines), max(0, len(lines) - _MAX_SALVAGE_TRIES), -1):
        if not lines[k - 1].strip():
            continue  # same prefix as a shorter one, minus trailing blank lines
        program = _canonical_or_none(language, "\n".join(lines[:k]) + "\n")
        if program is not None:
            return program
    return None


def _extract_script(reply: str, language: Language, repair: bool) -> Extraction:
    cands = _script_candidates(reply, language)
    valid = [c for c in cands if c.program is not None]
    if valid:
        pool = [c for c in valid if c.fenced] or valid  # rule 4
        best = pool[-1]  # rule 5
        return Extraction(best.program, best.text, best.fenced, False, best.fixes, len(valid))
    # Rule 6: the reply was cut inside its last candidate.
    if repair and cands and not cands[-1].closed:
        cut = cands[-1]
        if cut.fenced or _incomplete_python(normalize_script(cut.text)[0]):
            # from the candidate to the end of the reply: whether its last line ended matters
            salvaged = salvage_script(reply[cut.start :], language)
            if salvaged:
                return Extraction(salvaged, cut.text, cut.fenced, True, normalize_script(cut.text)[1], 0)
    # Rule 7: an empty code block is the empty program only where the language has one.
    fences = _fence_ranges(reply)
    if any(not reply[a:b].strip() for a, b in fences) and language.is_valid(""):
        return Extraction(language.canonical(""), "", True, False, (), 0)
    return Extraction(None)
