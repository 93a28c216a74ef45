"""The reference vectors in `tests/golden/` are the files their README names, unchanged."""

import hashlib
import json
import re
from pathlib import Path

GOLDEN = Path(__file__).resolve().parent / "golden"


def recorded() -> dict[str, str]:
    rows = re.findall(r"^\| `([^`]+\.json)` \| `([0-9a-f]{64})` \|", (GOLDEN / "README.md").read_text(), re.M)
    return dict(rows)


def test_every_reference_file_has_its_provenance_recorded():
    files = sorted(p.name for p in GOLDEN.glob("*.json"))
    assert files, "no reference vectors in tests/golden"
    assert sorted(recorded()) == files


def test_each_file_matches_the_recorded_sha256():
    for name, digest in recorded().items():
        assert hashlib.sha256((GOLDEN / name).read_bytes()).hexdigest() == digest, name


def test_each_file_names_the_library_that_computed_it():
    for name in recorded():
        meta = json.loads((GOLDEN / name).read_text())
        assert meta["reference"] and len(meta["items"]) == 36, name
