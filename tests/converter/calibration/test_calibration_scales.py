"""Scale and zero point of the integer grid (fp8conv.converter.calibration.scales).

Oracle: onnxruntime's QuantizeLinear -> DequantizeLinear on the grid the parameters define.
"""

from __future__ import annotations

import numpy as np
import pytest
from calibration_helpers import QTYPES, ort_qdq

from fp8conv.converter import calibration as cal


def test_uint8_non_negative_range_has_zero_point_zero() -> None:
    scale, zero_point = cal.quantization_params(0.0, 6.0, "uint8")
    assert zero_point == 0
    assert scale == np.float32(6.0 / 255)
    assert cal.quantization_params(0.5, 6.0, "uint8")[1] == 0  # the range is widened to contain 0


def test_uint8_non_positive_range_has_zero_point_qmax() -> None:
    assert cal.quantization_params(-3.0, 0.0, "uint8")[1] == 255
    assert cal.quantization_params(-3.0, 0.0, "uint16")[1] == 65535


@pytest.mark.parametrize(("qtype", "qmax"), [("int8", 127), ("int16", 32767)])
def test_symmetric_types_have_zero_point_zero(qtype: str, qmax: int) -> None:
    scale, zero_point = cal.quantization_params(-2.0, 5.0, qtype)
    assert zero_point == 0
    assert scale == np.float32(5.0 / qmax)


@pytest.mark.parametrize("qtype", QTYPES)
def test_zero_range_gives_positive_scale(qtype: str) -> None:
    scale, zero_point = cal.quantization_params(0.0, 0.0, qtype)
    assert scale == np.float32(1.0)
    assert zero_point == 0
    tiny_scale, _ = cal.quantization_params(0.0, 1e-45, qtype)
    assert tiny_scale >= np.finfo(np.float32).tiny


def test_signed_asymmetric_zero_point_makes_zero_exact() -> None:
    lo, hi = -1.3, 2.9
    scale, zero_point = cal.quantization_params(lo, hi, "uint8")
    assert scale.dtype == np.float32
    assert zero_point == int(np.rint(-lo / scale))
    x = np.array([0.0, lo, hi, 10.0, -10.0], dtype=np.float32)
    y = ort_qdq(x, scale, zero_point, "uint8")
    assert y[0] == 0.0
    assert abs(y[1] - lo) <= scale
    assert abs(y[2] - hi) <= scale
    assert y[3] == (255 - zero_point) * scale
    assert y[4] == -zero_point * scale


@pytest.mark.parametrize(
    ("lo", "hi", "qtype", "match"),
    [(1.0, 0.0, "uint8", "inverted"), (float("nan"), 1.0, "uint8", "finite"), (0.0, 1.0, "int4", "unknown integer")],
)
def test_quantization_params_rejects_bad_arguments(lo: float, hi: float, qtype: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        cal.quantization_params(lo, hi, qtype)
