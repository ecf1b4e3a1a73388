"""``run_reference`` (fp8conv/converter/reference_run.py): what ``fp8conv run`` calls."""

from __future__ import annotations

from helpers import residual_cnn_files

import fp8conv.converter.reference_run as reference_run


def test_run_reference_draws_no_bar_when_told_not_to(tmp_path, monkeypatch):
    disabled = []
    real = reference_run.tqdm

    def recording(*args, **kwargs):
        disabled.append(kwargs["disable"])
        return real(*args, **kwargs)

    monkeypatch.setattr(reference_run, "tqdm", recording)
    model, data = residual_cnn_files(tmp_path)
    reference_run.run_reference(model, data, tmp_path / "a.npz")
    reference_run.run_reference(model, data, tmp_path / "b.npz", progress=False)
    assert disabled == [None, True]  # None: tqdm's own rule, a bar only on a terminal
