"""Solutions marked in a source, the way otter-grader's Otter Assign marks them.

Used by notebooks/src/build.py (handouts and reference notebooks from one source) and by
``lab release`` (a student bundle with every marked file blanked)::

    # BEGIN SOLUTION            the lines up to `# END SOLUTION` are the answer: the handout has
    ...                         `...` in their place (nothing with `# BEGIN SOLUTION NO PROMPT`,
    # END SOLUTION              nor in a cell-magic cell such as %%writefile, nor in YAML)
    # BEGIN PROMPT              lines up to `# END PROMPT` appear only in the handout
    x = compute()  # SOLUTION   one line: the handout keeps `x = ...`; YAML `key: value  # SOLUTION`
                                keeps `key:` (an empty value)
"""
from __future__ import annotations

import re

HANDOUT, REFERENCE = "handout", "reference"
# Otter Assign's markers (otter-grader docs/otter_assign/notebook_format.rst).
BEGIN_SOLUTION = re.compile(r"^(?P<indent>\s*)# BEGIN SOLUTION(?P<quiet> NO PROMPT)?\s*$")
END_SOLUTION = re.compile(r"^\s*# END SOLUTION\s*$")
BEGIN_PROMPT = re.compile(r"^\s*# BEGIN PROMPT\s*$")
END_PROMPT = re.compile(r"^\s*# END PROMPT\s*$")
SOLUTION_LINE = re.compile(r"^(?P<code>.*?)\s*# SOLUTION\s*$")
PYTHON_ASSIGNMENT = re.compile(r"^(?P<lhs>\s*[\w.\[\]'\", ]+?\s*=)(?!=)")
YAML_KEY = re.compile(r"^(?P<key>\s*(?:- )?[^:#]+:)")


class MarkerError(ValueError):
    pass


def has_markers(text: str) -> bool:
    """Whether ``text`` has a marker line (a marker quoted in prose does not count)."""
    return any(p.match(line) for line in text.splitlines()
               for p in (BEGIN_SOLUTION, END_SOLUTION, BEGIN_PROMPT, END_PROMPT, SOLUTION_LINE))


def _blank_line(code: str, cell_magic: bool) -> str:
    """A `# SOLUTION` line in the handout: the assignment's target or the YAML key, value left out."""
    match = (YAML_KEY if cell_magic else PYTHON_ASSIGNMENT).match(code)
    if match is None:
        raise MarkerError(f"`# SOLUTION` on a line that is not an assignment or a key: {code.strip()!r}")
    return match.group(1).rstrip() + ("" if cell_magic else " ...")


def split_solutions(source: str, product: str, *, yaml: bool = False) -> str:
    """``source`` (a code cell, or a YAML file with ``yaml``) with the solution markers resolved
    for ``product``; a :class:`MarkerError` names the line of a broken marker."""
    lines, out, block = source.splitlines(), [], None
    cell_magic = yaml or (bool(lines) and lines[0].startswith("%%"))
    for number, line in enumerate(lines, 1):
        if block is not None and block["end"].match(line):
            block = None
            continue
        begin_solution, begin_prompt = BEGIN_SOLUTION.match(line), BEGIN_PROMPT.match(line)
        if begin_solution or begin_prompt:
            if block is not None:
                raise MarkerError(f"line {number}: a block opens inside another block")
            block = {"kind": "solution" if begin_solution else "prompt",
                     "end": END_SOLUTION if begin_solution else END_PROMPT, "line": number}
            if begin_solution and product == HANDOUT and not (begin_solution.group("quiet") or cell_magic):
                out.append(begin_solution.group("indent") + "...")
            continue
        if END_SOLUTION.match(line) or END_PROMPT.match(line):
            raise MarkerError(f"line {number}: {line.strip()} without its BEGIN")
        if block is not None:
            if (block["kind"] == "solution") == (product == REFERENCE):
                out.append(line)
            continue
        solution = SOLUTION_LINE.match(line)
        if solution:
            out.append(solution.group("code") if product == REFERENCE else _blank_line(solution.group("code"), cell_magic))
            continue
        out.append(line)
    if block is not None:
        raise MarkerError(f"line {block['line']}: the block is not closed")
    return "\n".join(out)


