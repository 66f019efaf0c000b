"""pni.reports: the one Markdown table helper and the one atomic JSON writer; the old module
names (pni.report, pni.figures, pni.audit) are gone."""
from __future__ import annotations

import importlib
import json
import os

import pytest

import pni.reports
from pni.files import WriteError, write_json
from pni.reports import md_table


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
    with pytest.raises(WriteError, match="cannot write results file .*results.json"):
        write_json({"a": 2}, path)
    assert json.loads(path.read_text())["a"] == [1, 2]  # the old file, whole
    assert os.listdir(path.parent) == ["results.json"]  # and no temporary file left


def test_write_json_refuses_what_json_cannot_hold(tmp_path):
    with pytest.raises(TypeError, match="object"):
        write_json({"x": object()}, tmp_path / "x.json")


def test_the_old_module_names_are_gone_and_no_public_name_is_also_a_module():
    old_names = ["pni.report", "pni.figures", "pni.audit", "pni.evaluate", "pni.certify", "pni.train",
                 "pni.cli_args", "pni.certify_cli", "pni.runfolder", "pni.helpfield", "pni.cli.commands",
                 "pni.reports.json_io"]
    for old in old_names:
        with pytest.raises(ModuleNotFoundError):
            importlib.import_module(old)
    import pni
    import pni.auditing
    import pni.certification
    import pni.evaluation
    assert callable(pni.audit) and callable(pni.evaluate) and callable(pni.certify)
    assert pni.auditing.AuditSettings and pni.evaluation.EvalSettings and pni.certification.Certification


def test_the_lenient_readers_read_a_missing_or_half_written_file_as_nothing(tmp_path):
    from pni.files import read_json, read_jsonl
    from pni.runs import read_config, read_train_log

    assert read_json(tmp_path / "missing.json") is None and read_jsonl(tmp_path / "missing.jsonl") == []
    (tmp_path / "config.json").write_text('{"epochs": 3')          # cut short by a kill
    (tmp_path / "train_log.jsonl").write_text('{"epoch": 1}\n{"epo')
    assert read_config(tmp_path) is None and read_train_log(tmp_path) == []
    (tmp_path / "config.json").write_text('{"epochs": 3}')
    (tmp_path / "train_log.jsonl").write_text('{"epoch": 1}\n\n{"epoch": 2}\n')
    assert read_config(tmp_path) == {"epochs": 3} and [r["epoch"] for r in read_train_log(tmp_path)] == [1, 2]


def test_checkpoint_loading_lives_with_the_models_and_the_checkpoint_file_is_a_leaf():
    import pni.checkpoint
    import pni.models

    assert not hasattr(pni.checkpoint, "load_model") and not hasattr(pni.checkpoint, "model_meta")
    assert callable(pni.models.load_model) and callable(pni.models.model_meta)
