"""``fp8conv verify`` (fp8conv/cli/verify.py): its checks come before verification runs."""

from __future__ import annotations

import importlib

from click.testing import CliRunner
from helpers import residual_cnn_files

from fp8conv.cli import cli


def test_verify_checks_where_its_reports_go_before_it_runs(tmp_path, monkeypatch):
    source, data = residual_cnn_files(tmp_path)
    (tmp_path / "a_file").write_text("")

    def not_reached(*args, **kwargs):
        raise AssertionError("verification ran although its reports cannot be written")

    monkeypatch.setattr(importlib.import_module("fp8conv.verification.verify"), "verify", not_reached)
    report = tmp_path / "a_file" / "report"
    outcome = CliRunner().invoke(
        cli, ["verify", str(source), str(source), "--data", str(data), "--report", str(report)]
    )
    assert outcome.exit_code == 2, outcome.output
    assert f"{report}: cannot write the reports: {tmp_path / 'a_file'} is not a directory" in outcome.output
