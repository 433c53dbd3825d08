"""The bench report code: tables become a BENCHMARKS.md block that replaces only its own section."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tooling.bench.report import (
    Report,
    Section,
    Target,
    at_least,
    at_most,
    markers,
    misses,
    titled_block,
    write_benchmarks,
)


def _report() -> Report:
    report = Report(command="qt bench demo", date="2026-12-04", machine={"cpu": "test", "cores": "2"})
    section = Section("Throughput", ["clients", "ops/s"])
    section.add("1", "1,000")
    section.add("a|b", "2")
    report.sections.append(section)
    report.targets.append(Target("ops/s", ">= 10", "1,000", met=True))
    report.targets.append(at_most("p99", 0.001, 0.003, "3 ms", wanted="< 1 ms", see="the profile"))
    return report


def test_a_section_refuses_a_row_of_the_wrong_width() -> None:
    with pytest.raises(ValueError, match="3 cells for 2 columns"):
        Section("T", ["a", "b"]).add("1", "2", "3")


def test_the_block_has_targets_tables_and_the_reason_before_the_first_table() -> None:
    text = titled_block(_report(), "> **why**: disk", "demo")
    assert text.startswith("## `qt bench demo`")
    assert "| p99 | < 1 ms | 3 ms | 3.00x | **MISSED** (3.00x of the target) |" in text
    assert "- **Missed:** p99: 3 ms against < 1 ms, 3.00x of the target; see the profile" in text
    assert "| a\\|b | 2 |" in text  # a pipe inside a cell does not split the markdown row
    assert text.index("> **why**: disk") < text.index("### Throughput")


def test_writing_replaces_only_its_own_block(tmp_path: Path) -> None:
    out = tmp_path / "BENCHMARKS.md"
    write_benchmarks(out, titled_block(_report(), None, "other"), name="other")
    write_benchmarks(out, "first run\n", name="demo")
    write_benchmarks(out, "second run\n", name="demo")
    text = out.read_text()
    begin, end = markers("demo")
    assert text.count(begin) == 1 and text.count(end) == 1
    assert "second run" in text and "first run" not in text
    assert "## `qt bench other`" in text  # the other bench's block is kept


def test_bench_commands_print_only_unless_asked_to_write() -> None:
    from tooling.bench.cli import app as bench_app

    for name in ("wallet", "saga", "gateway", "matching", "engine"):
        result = CliRunner().invoke(bench_app, [name, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        assert "[default: no-write]" in result.output, name


def test_a_floor_target_says_how_much_of_it_was_reached() -> None:
    t = at_least("sagas/s", 1_000.0, 340.0, "340/s", see="the CPU table")
    assert not t.met and t.target == ">= 1,000/s" and t.by == "0.34x"
    assert misses([t]) == ["sagas/s: 340/s against >= 1,000/s, 0.34x of the target; see the CPU table"]


def test_a_floor_target_is_met_at_the_floor_unless_a_side_condition_fails() -> None:
    assert at_least("x", 10.0, 10.0, "10").met
    assert not at_least("x", 10.0, 12.0, "12", ok=False).met
    assert not at_least("x", 10.0, None, "-").met and at_least("x", 10.0, None, "-").by == "-"


def test_a_ceiling_target_is_strict_unless_told_otherwise() -> None:
    assert not at_most("p99", 0.020, 0.020, "20 ms", wanted="< 20 ms").met
    assert at_most("cpu", 1_500.0, 1_500.0, "1,500 µs", wanted="<= 1,500 µs", strict=False).met
    assert at_most("p99", 0.020, 0.010, "10 ms", wanted="< 20 ms").by == "0.50x"


def test_met_targets_are_not_listed_as_misses() -> None:
    assert misses([at_least("x", 1.0, 2.0, "2")]) == []


def test_qt_bench_without_the_bench_extra_says_how_to_install_it() -> None:
    # a fresh interpreter in which the bench-only package cannot be imported, as in a plain `pip install -e .`
    hide = ("import sys, importlib.machinery as m\n"
            "class Hide(m.PathFinder):\n"
            "    @classmethod\n"
            "    def find_spec(cls, name, path=None, target=None):\n"
            "        return None if name == 'aiosqlite' else super().find_spec(name, path, target)\n"
            "sys.meta_path = [f for f in sys.meta_path if f is not m.PathFinder] + [Hide]\n"
            "sys.argv = ['qt', 'bench', 'engine', '--help']\n"
            "from tooling.cli import main\n"
            "main()\n")
    done = subprocess.run([sys.executable, "-c", hide], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "pip install -e '.[bench]'" in done.stderr
    assert "aiosqlite" in done.stderr
