"""The layout's rules that nothing else would catch until a command failed."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {p.parent.name for p in ROOT.glob("*/__init__.py")}


def test_no_benchmark_is_named_like_a_package():
    # a benchmark runs as a file with benchmarks/ first on sys.path: benchmarks/studio.py
    # would be imported in place of the studio package
    names = {p.stem for p in (ROOT / "benchmarks").glob("*.py")}
    assert PACKAGES, "found no packages at the top level"
    assert not names & PACKAGES
