"""pni.reports: the one Markdown table helper, the one atomic JSON writer, and the old
module names (pni.report, pni.figures, pni.audit's writers) kept as re-exports."""
from __future__ import annotations

import importlib
import json
import os

import pytest

import pni.figures
import pni.report
import pni.reports
from pni.checkpoint import CheckpointError
from pni.reports import md_table, write_json


def test_md_table_escapes_pipes_and_pads_short_rows():
    table = md_table(["a", "b|c"], [["x|y", 1], ["only"]])
    assert table == "| a | b\\|c |\n|---|---|\n| x\\|y | 1 |\n| only | - |\n"


def test_md_table_aligns_columns_and_keeps_a_cell_on_one_line():
    table = md_table(["name", "value", "mid"], [["two\nlines", 0.5, "c"]], align=["left", "right", "center"])
    assert table.splitlines()[1] == "|:---|---:|:---:|"
    assert table.splitlines()[2] == "| two lines | 0.5 | c |"


@pytest.mark.parametrize("header, rows, align, match", [
    (["a"], [["1", "2"]], None, "a row of 2 cells under 1 columns"),
    (["a", "b"], [], ["left"], "1 alignments for 2 columns"),
    (["a"], [], ["middle"], "alignment 'middle'"),
])
def test_md_table_refuses_a_table_it_cannot_lay_out(header, rows, align, match):
    with pytest.raises(ValueError, match=match):
        md_table(header, rows, align)


def test_write_json_is_atomic_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    path = write_json({"a": [1, 2], "p": tmp_path}, tmp_path / "sub" / "results.json")
    assert json.loads(path.read_text()) == {"a": [1, 2], "p": str(tmp_path)}
    assert path.read_text().endswith("}\n") and os.listdir(path.parent) == ["results.json"]

    def broken_replace(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(CheckpointError, match="cannot write results file .*results.json"):
        write_json({"a": 2}, path)
    assert json.loads(path.read_text())["a"] == [1, 2]  # the old file, whole
    assert os.listdir(path.parent) == ["results.json"]  # and no temporary file left


def test_write_json_refuses_what_json_cannot_hold(tmp_path):
    with pytest.raises(TypeError, match="object"):
        write_json({"x": object()}, tmp_path / "x.json")


def test_the_old_module_names_re_export_pni_reports():
    assert pni.report.write_evaluation is pni.reports.write_evaluation
    assert pni.report.ReportError is pni.reports.ReportError
    assert pni.figures.plot_fig3 is pni.reports.plot_fig3
    audit_package = importlib.import_module("pni.audit")  # pni.audit the attribute is the function
    for name in ("write_audit", "load_audit", "audit_markdown", "sweep_table"):
        assert getattr(audit_package, name) is getattr(pni.reports, name)
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        audit_package.nothing  # noqa: B018
