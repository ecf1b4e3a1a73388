"""The conversion's messages (issue 15): one line per reason, keep_float as a note, what auto-INT16 promoted.

On the shipped sample models: ``--to w4a16`` said two lines per Conv (a "stays float" warning and the
audit's float kernel), ``--to int4`` repeated one long reason per layer, and a ``--keep-float`` the user
asked for came out as a warning.
"""

from __future__ import annotations

import re

from paths import REPO_ROOT

from fp8conv.converter.grouping import group_by_message, name_list, subject
from fp8conv.converter.pipeline import convert_file
from fp8conv.converter.summary import conversion_summary

MODELS = REPO_ROOT / "models"
CNN = MODELS / "digits_cnn"
SEQ = MODELS / "seq_transformer"


def test_grouping_names_the_first_three_and_counts_the_rest():
    names = [f"conv{i}" for i in range(1, 15)]
    assert name_list(names) == "conv1, conv2, conv3, … and 11 more"
    assert name_list(names[:4]) == "conv1, conv2, conv3, conv4"
    assert subject(names, "layer") == "14 layers (conv1, conv2, conv3, … and 11 more)"
    assert subject(["conv1"], "layer", "conv1 (Conv)") == "layer conv1 (Conv)"
    assert group_by_message([("a", "x"), ("b", "y"), ("c", "x")]) == [(["a", "c"], "x"), (["b"], "y")]


def test_w4a16_says_once_that_the_convs_stay_float(tmp_path):
    result = convert_file(CNN / "model.onnx", tmp_path / "m.onnx", to="w4a16", data=CNN / "calib.npz")
    floats = [layer.node for layer in result.layers if layer.precision == "float"]
    assert len(floats) > 1
    summary = conversion_summary(result)
    mentions = [line for line in summary.splitlines() if any(re.search(rf"\b{node}\b", line) for node in floats)]
    assert len(mentions) == 1, summary
    assert mentions[0].startswith(f"warning: {len(floats)} layers ({', '.join(floats[:3])}, … and ")
    assert f"({len(floats)} kept float by the plan)" in summary
    assert len(result.warnings) == 1


def test_int4_groups_identical_kernel_reasons(tmp_path):
    result = convert_file(SEQ / "model.onnx", tmp_path / "m.onnx", to="int4", data=SEQ / "calib.npz")
    summary = conversion_summary(result)
    groups = group_by_message((record.node, record.reason) for record in result.audit.float_records())
    assert any(len(nodes) > 4 for nodes, _ in groups)  # the situation under test: many layers, one reason
    for nodes, reason in groups:
        lines = [line for line in summary.splitlines() if line.endswith(f": {reason}")]
        assert len(lines) == 1, summary
        if len(nodes) > 1:
            assert lines[0].startswith(f"  float: {len(nodes)} layers ({nodes[0]}, ")
    assert len(summary.splitlines()) < 10


def test_a_keep_float_the_user_asked_for_is_a_note_not_a_warning(tmp_path):
    result = convert_file(CNN / "model.onnx", tmp_path / "m.onnx", data=CNN / "calib.npz", keep_float=["conv2d_1$"])
    assert result.notes == ["layer node_conv2d_1 (Conv) stays float: kept float by a keep_float pattern"]
    assert not [warning for warning in result.warnings if "keep_float" in warning]
    summary = conversion_summary(result)
    assert "note: layer node_conv2d_1 (Conv) stays float" in summary
    warnings = [line for line in summary.splitlines() if "warning:" in line]
    assert not [line for line in warnings if "keep_float" in line]
    # The one warning left is true: onnxruntime quantizes this float Conv between quantized neighbours itself.
    assert [line.strip().split(":")[1].strip() for line in warnings] == [
        "layer node_conv2d_1 (Conv as QLinearConv) planned float"
    ]
    assert result.to_json()["notes"] == result.notes


def test_auto_int16_reports_which_activations_became_int16_and_at_what_sqnr(tmp_path):
    result = convert_file(SEQ / "model.onnx", tmp_path / "m.onnx", data=SEQ / "calib.npz", auto_int16_below_db=45.0)
    assert result.auto_int16
    summary = conversion_summary(result)
    assert f"auto INT16   {len(result.auto_int16)} activation groups with INT8 SQNR below 45 dB became INT16" in summary
    int16 = {tensor for record in result.activations if record.dtype == "int16" for tensor in record.tensors}
    for group in result.auto_int16:
        assert group["int8_sqnr_db"] < 45.0
        assert set(group["tensors"]) <= int16
        assert f"{', '.join(group['tensors'])}: INT8 SQNR {group['int8_sqnr_db']:.1f} dB" in summary
        for node in group["layers"]:
            assert "(auto)" in next(layer.reason for layer in result.layers if layer.node == node)
    none = convert_file(SEQ / "model.onnx", tmp_path / "n.onnx", data=SEQ / "calib.npz", auto_int16_below_db=0.0)
    assert none.auto_int16 == []
    assert "auto INT16" not in conversion_summary(none)
