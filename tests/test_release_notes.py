"""RELEASE_NOTES.md states only measured performance: every figure equals the committed results of
the benchmark run the notes name (docs/bench/*.json), with the rounding shown.

The notes hold the figures in a table whose last column is the JSON key of each figure:
dotted names, with `[field=value,...]` picking the one list item whose fields have those values,
e.g. `engine.rows[model=all-MiniLM-L6-v2,batch=1,tokens=10].candle.sentences_per_s`. A figure
in the text outside that table must be one of the table's values (targets and limits, written
after `<`, `>`, `≥`, `≤` or "target of", are not figures).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTES = REPO / "RELEASE_NOTES.md"

_BENCH_FILE = re.compile(r"`(docs/bench/[^`]+\.json)`")
_NUMBER = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)")
_UNITS = r"(×|ms|req/s|MB|sentences/s)"
_PROSE_FIGURE = re.compile(r"(\d+(?:\.\d+)?)(?:\s*[–-]\s*(\d+(?:\.\d+)?))?\s*" + _UNITS + r"(?![\w/])")
_EXEMPT_BEFORE = re.compile(r"(?:[<>≥≤]|target of|target)\s*$")
_SEGMENT = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:\[([^\]]+)\])?")


class KeyError_(Exception):
    """A JSON key of the notes does not name exactly one value."""


def resolve(data, key: str):
    """The value `key` names in `data`."""
    value = data
    for part in key.split("."):
        match = _SEGMENT.fullmatch(part)
        if not match:
            raise KeyError_(f"{key}: cannot read {part!r}")
        name, selector = match[1], match[2]
        if not isinstance(value, dict) or name not in value:
            raise KeyError_(f"{key}: no {name!r}")
        value = value[name]
        if selector:
            wanted = dict(pair.split("=", 1) for pair in selector.split(","))
            found = [
                item
                for item in value
                if all(str(item.get(field)) == want for field, want in wanted.items())
            ]
            if len(found) != 1:
                raise KeyError_(f"{key}: {selector!r} picks {len(found)} items")
            value = found[0]
    return value


def figure_rows(markdown: str) -> list[tuple[str, str, str]]:
    """(label, value cell, JSON key) of every row of the tables whose last column is `JSON key`."""
    rows, in_table = [], False
    for line in markdown.splitlines():
        if not line.startswith("|"):
            in_table = False
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[-1] == "JSON key":
            in_table = True
            continue
        if in_table and not set(cells[0]) <= set("-: "):
            rows.append((cells[0], cells[-2], cells[-1].strip("`")))
    return rows


def shown(cell: str) -> str:
    """The number a value cell shows, as written."""
    match = _NUMBER.search(cell)
    assert match, f"no number in {cell!r}"
    return match[1]


def formatted(value, like: str) -> str:
    """`value` rounded to the decimals of `like`."""
    decimals = len(like.split(".")[1]) if "." in like else 0
    return f"{value:.{decimals}f}"


def unit_of(cell: str) -> str:
    match = re.search(_UNITS, cell)
    return match[1] if match else ""


def prose_figures(markdown: str) -> list[tuple[str, str, str]]:
    """(number, unit, line) of every figure outside tables and code."""
    found, in_code = [], False
    for line in markdown.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        if in_code or line.startswith("|"):
            continue
        for match in _PROSE_FIGURE.finditer(line):
            if _EXEMPT_BEFORE.search(line[: match.start()]):
                continue
            for number in filter(None, (match[1], match[2])):
                found.append((number, match[3], line))
    return found


@pytest.fixture(scope="module")
def notes() -> str:
    return NOTES.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def bench(notes):
    files = sorted(set(_BENCH_FILE.findall(notes)))
    assert len(files) == 1, f"RELEASE_NOTES.md must name exactly one results file, names {files}"
    return json.loads((REPO / files[0]).read_text(encoding="utf-8"))


def test_the_results_are_a_full_release_run_on_the_commit_the_notes_name(notes, bench):
    assert bench["profile"] == "release" and bench["quick"] is False
    assert f"commit {bench['commit'][:7]}" in notes
    assert bench["machine"]["cpu"] in notes


def test_every_figure_in_the_table_equals_the_results(notes, bench):
    rows = figure_rows(notes)
    assert len(rows) >= 20, rows
    wrong = []
    for label, cell, key in rows:
        value = resolve(bench, key)
        assert isinstance(value, (int, float)), f"{key} is {value!r}, not a number"
        if formatted(value, shown(cell)) != shown(cell):
            wrong.append(f"{label}: notes say {cell}, {key} is {value}")
    assert not wrong, "\n".join(wrong)


def test_every_figure_in_the_text_is_one_of_the_table(notes):
    table = {(shown(cell), unit_of(cell)) for _, cell, _ in figure_rows(notes)}
    stray = [f"{n} {u} in: {line}" for n, u, line in prose_figures(notes) if (n, u) not in table]
    assert not stray, "\n".join(stray)


# --- the checks themselves --------------------------------------------------------------------

SAMPLE = {"rows": [{"model": "a", "batch": 1, "v": 0.8930}, {"model": "a", "batch": 32, "v": 2.0}]}


def test_keys_pick_list_items_by_field_and_refuse_ambiguity():
    assert resolve(SAMPLE, "rows[model=a,batch=1].v") == 0.8930
    with pytest.raises(KeyError_, match="picks 2 items"):
        resolve(SAMPLE, "rows[model=a].v")
    with pytest.raises(KeyError_, match="no 'w'"):
        resolve(SAMPLE, "rows[batch=32].w")


def test_a_figure_off_by_one_in_its_last_digit_is_caught():
    assert formatted(0.8930, "0.89") == "0.89"
    assert formatted(0.8930, "0.90") != "0.90"
    assert formatted(204.8356, "205") == "205"


def test_a_stray_figure_in_the_text_is_found_and_targets_are_not():
    text = "| a | 1.09× | `k` |\nup to 1.09×, 0.80–0.91× here, target of 1000 req/s, P95 < 35 ms.\n"
    assert [(n, u) for n, u, _ in prose_figures(text)] == [("1.09", "×"), ("0.80", "×"), ("0.91", "×")]
