"""--seed, --val-range and --input-shapes: how random inputs (--random-inputs N) are made (issue 15)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from classifier_models import build_classifier
from click.testing import CliRunner
from helpers import refused_in_one_line

import fp8conv
from fp8conv.cli import cli
from fp8conv.converter.pipeline import convert_file
from fp8conv.errors import Fp8ConvError
from fp8conv.options import option
from fp8conv.report.schema import validate_report
from fp8conv.runtime.ort_backend import TensorInfo
from fp8conv.verification.inputs import random_samples


def _arrays(samples) -> dict[str, np.ndarray]:
    batches = list(samples.batches(samples.num_samples))
    return {name: np.concatenate([batch[name] for batch in batches]) for name in samples.input_names}


FLOAT = TensorInfo(name="x", dtype=np.dtype(np.float32), onnx_type="tensor(float)", shape=("N", 4))
INTEGER = TensorInfo(name="ids", dtype=np.dtype(np.int64), onnx_type="tensor(int64)", shape=("N", 3))
DYNAMIC = TensorInfo(name="seq", dtype=np.dtype(np.float32), onnx_type="tensor(float)", shape=("N", "T", 8))


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("random_inputs")
    onnx.save(build_classifier(), root / "mlp.onnx")
    convert_file(root / "mlp.onnx", root / "mlp.int8.onnx")
    return {"root": root, "fp8": root / "mlp.onnx", "int8": root / "mlp.int8.onnx"}


def _invoke(*args: object):
    return CliRunner().invoke(cli, [str(arg) for arg in args])


# --- the generator -----------------------------------------------------------------------------------


def test_the_default_seed_is_todays_inputs():
    # today's rule, written out: chunk i from default_rng([0, i]), standard normal floats, integers 0 or 1
    samples = _arrays(random_samples([FLOAT, INTEGER], 70))
    first = np.random.default_rng([0, 0])
    expected_x = first.standard_normal((64, 4)).astype(np.float32)
    expected_ids = first.integers(0, 2, (64, 3)).astype(np.int64)
    np.testing.assert_array_equal(samples["x"][:64], expected_x)
    np.testing.assert_array_equal(samples["ids"][:64], expected_ids)
    assert samples["x"].shape == (70, 4)
    assert random_samples([FLOAT], 3).source == "3 random inputs (seed 0)"


def test_the_seed_changes_the_inputs_reproducibly():
    same = [_arrays(random_samples([FLOAT], 10, seed=7))["x"] for _ in range(2)]
    np.testing.assert_array_equal(same[0], same[1])
    assert not np.array_equal(same[0], _arrays(random_samples([FLOAT], 10))["x"])
    assert random_samples([FLOAT], 3, seed=7).source == "3 random inputs (seed 7)"


def test_val_range_bounds_the_inputs_globally_and_per_input():
    ranges = option("val_range").check(["-0.5,0.25", "ids:3,5"], "val_range")
    samples = _arrays(random_samples([FLOAT, INTEGER], 200, val_range=ranges))
    assert samples["x"].min() >= -0.5
    assert samples["x"].max() <= 0.25
    assert samples["x"].max() > 0.2  # uniform over the range, not a corner of it
    assert samples["x"].min() < -0.45
    assert set(np.unique(samples["ids"])) == {3, 4, 5}
    assert samples["ids"].dtype == np.int64


def test_input_shapes_set_a_dynamic_dimension():
    with pytest.raises(Fp8ConvError, match="symbolic dimension"):
        random_samples([DYNAMIC], 4)
    for spec in ("seq:2x5x8", "seq:[2,5,8]"):
        shapes = option("input_shapes").check(spec, "input_shapes")
        assert _arrays(random_samples([DYNAMIC], 4, input_shapes=shapes))["seq"].shape == (4, 5, 8)
    with pytest.raises(Fp8ConvError, match="static"):
        random_samples([DYNAMIC], 4, input_shapes=(("seq", (2, 5, 9)),))
    with pytest.raises(Fp8ConvError, match="dimensions"):
        random_samples([DYNAMIC], 4, input_shapes=(("seq", (2, 5)),))
    with pytest.raises(Fp8ConvError, match="no input 'other'"):
        random_samples([DYNAMIC], 4, input_shapes=(("other", (2, 5, 8)),))


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("val_range", "1,0"),
        ("val_range", "a,b"),
        ("val_range", "1"),
        ("val_range", "nan,1"),
        ("val_range", ["0,1", "0,2"]),
        ("input_shapes", "seq"),
        ("input_shapes", "seq:2x0x8"),
        ("input_shapes", "seq:2xTx8"),
        ("input_shapes", "seq:[2,,8]"),
        ("seed", -1),
    ],
)
def test_bad_values_name_the_option(name, value):
    with pytest.raises(Fp8ConvError, match=f"^{name}"):
        option(name).check(value, name)


# --- through verify, the CLI and the report ---------------------------------------------------------


def test_same_seed_same_numbers_other_seed_other_numbers(classifier):
    def sum_err_sq(**keywords) -> float:
        result = fp8conv.verify(classifier["fp8"], classifier["int8"], random_inputs=16, **keywords)
        return result.outputs[0].total.sum_err_sq

    assert sum_err_sq(seed=5) == sum_err_sq(seed=5)
    assert sum_err_sq(seed=5) != sum_err_sq(seed=6)
    assert sum_err_sq() == sum_err_sq(seed=0)


def test_the_cli_records_seed_range_and_shapes_in_the_report(classifier):
    outcome = _invoke(
        "verify", classifier["fp8"], classifier["int8"], "--random-inputs", 8, "--seed", 3,
        "--val-range", "x:-1,1", "--input-shapes", "x:1x16", "--json",
    )  # fmt: skip
    assert outcome.exit_code in (0, 1), outcome.output
    report = json.loads(outcome.stdout)
    validate_report(report)
    role = report["verification_data"]
    assert role["source"] == "random"
    assert (role["seed"], role["val_range"], role["input_shapes"]) == (3, {"x": [-1.0, 1.0]}, {"x": [1, 16]})
    assert report["data"]["source"] == "8 random inputs (seed 3)"
    assert any("uniform in --val-range, seed 3" in warning for warning in report["warnings"])


def test_convert_passes_them_to_verification(classifier, tmp_path):
    outcome = _invoke(
        "convert", classifier["fp8"], "-o", tmp_path / "out.onnx", "--random-inputs", 4, "--seed", 9, "--json"
    )
    assert outcome.exit_code in (0, 1), outcome.output
    assert json.loads(outcome.stdout)["verification_data"]["seed"] == 9


@pytest.mark.parametrize(
    ("args", "parts"),
    [
        (["--val-range", "2,1"], ["--val-range", "LOW,HIGH"]),
        (["--input-shapes", "x:1xQ"], ["--input-shapes"]),
        (["--seed", "-3"], ["--seed"]),
        (["--input-shapes", "y:1x16"], ["--input-shapes", "no input 'y'"]),
        (["--input-shapes", "x:1x15"], ["--input-shapes", "static"]),
    ],
)
def test_bad_values_exit_2_in_one_line(classifier, args, parts):
    refused_in_one_line(_invoke("verify", classifier["fp8"], classifier["int8"], "--random-inputs", 4, *args), *parts)


@pytest.mark.parametrize("args", [["--seed", "1"], ["--val-range", "0,1"], ["--input-shapes", "x:1x16"]])
def test_without_random_inputs_they_are_refused(classifier, tmp_path, args):
    np.savez(tmp_path / "data.npz", x=np.zeros((4, 16), np.float32))
    line = refused_in_one_line(
        _invoke("verify", classifier["fp8"], classifier["int8"], "--data", tmp_path / "data.npz", *args)
    )
    assert args[0] in line
    assert "--random-inputs" in line
    line = refused_in_one_line(_invoke("convert", classifier["fp8"], "-o", tmp_path / "out.onnx", *args))
    assert args[0] in line
    assert not (tmp_path / "out.onnx").exists()
    keyword = {args[0][2:].replace("-", "_"): int(args[1]) if args[0] == "--seed" else args[1]}
    with pytest.raises(Fp8ConvError, match="random_inputs"):
        fp8conv.convert_and_verify(classifier["fp8"], output=tmp_path / "api.onnx", **keyword)
    assert not (tmp_path / "api.onnx").exists()
