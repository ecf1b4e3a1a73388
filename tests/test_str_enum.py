"""``StrEnum`` (fp8conv/str_enum.py): the one base of fp8conv's enums of strings."""

from __future__ import annotations

import ast
import json

from paths import REPO_ROOT

from fp8conv.config import IntegerType, LayerPrecision
from fp8conv.options import ActivationRange, Target, Task
from fp8conv.passes.plan.records import DecisionCode
from fp8conv.str_enum import StrEnum


def test_a_member_reads_as_its_value():
    assert str(Target.INT8) == f"{Target.INT8}" == "int8"
    assert f"{IntegerType.UINT8:>6}|" == " uint8|"
    assert Task.EMBEDDING == "embedding"
    assert Target("w4a16") is Target.W4A16
    assert json.dumps({"precision": LayerPrecision.INT4}) == '{"precision": "int4"}'
    assert f"rule {DecisionCode.TRANS_A}" == "rule trans_a"
    assert ActivationRange.MSE.value == "mse"


def test_every_enum_of_strings_derives_from_the_one_base():
    found, own = [], []
    for path in sorted((REPO_ROOT / "fp8conv").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                bases = [ast.unparse(base) for base in node.bases]
                if "StrEnum" in bases:
                    found.append(node.name)
                if "str" in bases and any(base.endswith("Enum") for base in bases):
                    own.append(f"{path.relative_to(REPO_ROOT)}: {node.name}")
    assert own == [StrEnum.__module__.replace(".", "/") + ".py: StrEnum"]  # the base itself
    assert {"Target", "Task", "LayerPrecision", "IntegerType", "DecisionCode", "StatisticKind"} <= set(found)
