"""Layers point down (issue 12): every import inside ``fp8conv/`` goes to its own layer or a lower one.

Each module is parsed with :mod:`ast`: module-level, function-level and ``TYPE_CHECKING`` imports, relative
imports and ``importlib.import_module("fp8conv...")`` calls all count (a lazy import is still a dependency).
``from P import name`` is an import of the module ``P.name`` when there is one, else of ``P``; the parent
packages Python imports on the way are not counted. Each module's layer comes from :data:`MODULE_LAYERS`; the
tests fail listing every import that points up a layer, every import cycle between modules, every module
without a layer and every import of an ``fp8conv`` module that does not exist.
"""

from __future__ import annotations

import ast
import dataclasses
import textwrap
from collections.abc import Mapping
from pathlib import Path

import pytest
from paths import REPO_ROOT

PACKAGE_ROOT = REPO_ROOT

LAYERS: tuple[str, ...] = ("base", "numerics", "execution", "passes", "converter", "verification", "report", "cli")
"""Lowest first: a module may import from its own layer and the layers before it."""

MODULE_LAYERS: Mapping[str, str] = {
    # base: errors (everyone may import them), configuration, the version
    "fp8conv.errors": "base",
    "fp8conv.config": "base",
    "fp8conv.options.*": "base",
    "fp8conv._version": "base",
    "fp8conv.str_enum": "base",
    # numerics: number formats (float and integer), rounding, the FP8 emulator, integer weight quantization math
    "fp8conv.runtime": "numerics",
    "fp8conv.runtime.formats": "numerics",
    "fp8conv.runtime.integer_types": "numerics",
    "fp8conv.runtime.rounding": "numerics",
    "fp8conv.runtime.emulator": "numerics",
    # numerics: the constants of an onnx_ir graph (initializers, Constant outputs, Clip bounds), for passes and audit
    "fp8conv.runtime.ir_constants": "numerics",
    "fp8conv.runtime.clip_bounds": "numerics",
    "fp8conv.runtime.integer_quantization.*": "numerics",
    "fp8conv.fp8": "numerics",
    # execution: onnxruntime sessions, the reference session of a lowered model, onnxruntime's fusion rules, the
    # kernel audit
    "fp8conv.runtime.ort_backend": "execution",
    "fp8conv.runtime.reference": "execution",
    "fp8conv.runtime.fusion_rules": "execution",
    "fp8conv.runtime.audit.*": "execution",
    # passes: normalization, canonical form, lowering, planning (analysis), emission
    "fp8conv.passes.*": "passes",
    # converter: orchestration, calibration, loading, data, files, postconditions
    "fp8conv.converter.*": "converter",
    # verification: reference vs candidate, metrics, gates, the result
    "fp8conv.verification.*": "verification",
    # report: renderers of a result (json schema, markdown, html, terminal, files)
    "fp8conv.report.*": "report",
    # cli (the group, the option translation, the output, one module per command) and the public API
    "fp8conv.cli.*": "cli",
    "fp8conv.__main__": "cli",
    "fp8conv": "cli",
}
"""Module → layer. ``"P.*"`` is the package ``P`` and everything in it; the longest match wins."""


@dataclasses.dataclass(frozen=True)
class Import:
    """One import statement (or ``import_module`` call) of one module.

    Attributes:
        source: The importing module.
        target: The imported module (``P.name`` when ``from P import name`` names a module, else ``P``).
        line: Line number in the source.
    """

    source: str
    target: str
    line: int


def discover(root: Path, package: str) -> dict[str, Path]:
    """Every module of ``package`` under ``root`` (``root / package``): dotted name → file."""
    modules = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def parse_imports(module: str, path: Path, modules: Mapping[str, Path], package: str) -> list[Import]:
    """The imports of ``module`` that name ``package`` or something in it, anywhere in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    here = module if path.name == "__init__.py" else module.rpartition(".")[0]

    def inside(name: str) -> bool:
        return name == package or name.startswith(package + ".")

    found: list[Import] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [Import(module, alias.name, node.lineno) for alias in node.names if inside(alias.name)]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")[: len(here.split(".")) - (node.level - 1)]
                origin = ".".join([*base, *([node.module] if node.module else [])])
            else:
                origin = node.module or ""
            if not inside(origin):
                continue
            for alias in node.names:
                submodule = f"{origin}.{alias.name}"
                found.append(Import(module, submodule if submodule in modules else origin, node.lineno))
        elif isinstance(node, ast.Call) and _is_import_call(node):
            argument = node.args[0]
            if isinstance(argument, ast.Constant) and isinstance(argument.value, str) and inside(argument.value):
                found.append(Import(module, argument.value, node.lineno))
    return found


def _is_import_call(node: ast.Call) -> bool:
    function = node.func
    name = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", None)
    return name in ("import_module", "__import__") and bool(node.args)


def import_graph(root: Path, package: str) -> tuple[dict[str, Path], list[Import]]:
    """The modules of ``package`` and all their imports of it."""
    modules = discover(root, package)
    imports = [found for module, path in modules.items() for found in parse_imports(module, path, modules, package)]
    return modules, imports


def layer_of(module: str, table: Mapping[str, str] = MODULE_LAYERS) -> str | None:
    """The layer of ``module`` by ``table`` (exact names, then the longest ``"P.*"`` package), or None."""
    if module in table:
        return table[module]
    matches = [key[:-2] for key in table if key.endswith(".*")]
    matches = [p for p in matches if module == p or module.startswith(p + ".")]
    return table[max(matches, key=len) + ".*"] if matches else None


def upward_imports(imports: list[Import], table: Mapping[str, str] = MODULE_LAYERS) -> list[str]:
    """A line for every import whose target is in a higher layer than its source."""
    problems = []
    for found in imports:
        source, target = layer_of(found.source, table), layer_of(found.target, table)
        if source is not None and target is not None and LAYERS.index(target) > LAYERS.index(source):
            problems.append(f"{found.source} ({source}) line {found.line} imports {found.target} ({target})")
    return sorted(set(problems))


def import_cycles(imports: list[Import]) -> list[list[str]]:
    """Every cycle the depth-first search closes, each as ``[a, b, ..., a]``, rotated to start at its least name."""
    edges: dict[str, set[str]] = {}
    for found in imports:
        edges.setdefault(found.source, set()).add(found.target)
    cycles: set[tuple[str, ...]] = set()
    state: dict[str, str] = {}  # "open" while on the stack, "done" after
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = "open"
        stack.append(node)
        for successor in sorted(edges.get(node, ())):
            if state.get(successor) == "open":
                cycle = stack[stack.index(successor) :]
                start = cycle.index(min(cycle))
                cycles.add(tuple(cycle[start:] + cycle[:start]))
            elif successor not in state:
                visit(successor)
        stack.pop()
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node)
    return [[*cycle, cycle[0]] for cycle in sorted(cycles)]


@pytest.fixture(scope="module")
def graph() -> tuple[dict[str, Path], list[Import]]:
    return import_graph(PACKAGE_ROOT, "fp8conv")


def test_every_module_has_a_layer(graph) -> None:
    modules, _ = graph
    assert len(modules) > 50
    missing = sorted(module for module in modules if layer_of(module) is None)
    assert not missing, "modules without a layer in MODULE_LAYERS: " + ", ".join(missing)


def test_layer_table_names_existing_modules(graph) -> None:
    modules, _ = graph
    stale = [key for key in MODULE_LAYERS if key.removesuffix(".*") not in modules]
    assert not stale, "MODULE_LAYERS names modules that do not exist: " + ", ".join(stale)
    assert set(MODULE_LAYERS.values()) == set(LAYERS)


def test_imports_name_existing_modules(graph) -> None:
    modules, imports = graph
    unknown = sorted({f"{i.source} line {i.line}: {i.target}" for i in imports if i.target not in modules})
    assert not unknown, "imports of fp8conv modules that do not exist:\n" + "\n".join(unknown)


def test_imports_point_down(graph) -> None:
    _, imports = graph
    assert len(imports) > 100
    problems = upward_imports(imports)
    assert not problems, "imports that point up a layer:\n" + "\n".join(problems)


def test_no_import_cycles(graph) -> None:
    _, imports = graph
    cycles = import_cycles(imports)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(cycle) for cycle in cycles)


# -- the checker itself -------------------------------------------------------------------------------


def test_an_upward_import_is_reported() -> None:
    imports = [
        Import("fp8conv.runtime.formats", "fp8conv.converter.pipeline", 3),  # numerics -> converter: up
        Import("fp8conv.passes.plan", "fp8conv.config", 4),  # passes -> base: down
        Import("fp8conv.passes.plan", "fp8conv.passes.canonical", 5),  # same layer
        Import("fp8conv.verification.verify", "fp8conv", 6),  # the root package is the top (cli)
    ]
    assert upward_imports(imports) == [
        "fp8conv.runtime.formats (numerics) line 3 imports fp8conv.converter.pipeline (converter)",
        "fp8conv.verification.verify (verification) line 6 imports fp8conv (cli)",
    ]


def test_layer_lookup() -> None:
    assert layer_of("fp8conv") == "cli"
    assert layer_of("fp8conv.runtime") == "numerics"
    assert layer_of("fp8conv.runtime.audit") == "execution"
    assert layer_of("fp8conv.passes") == "passes"
    assert layer_of("fp8conv.converter.calibration.histograms") == "converter"
    assert layer_of("fp8conv.runtime.new_module") is None  # runtime's modules are listed one by one
    assert layer_of("fp8conv.reporting") is None  # a prefix of the name is not its package


def test_a_cycle_is_reported() -> None:
    imports = [Import("p.c", "p.a", 1), Import("p.a", "p.b", 1), Import("p.b", "p.c", 1), Import("p.b", "p.d", 1)]
    assert import_cycles(imports) == [["p.a", "p.b", "p.c", "p.a"]]
    assert import_cycles([Import("p.a", "p.a", 1)]) == [["p.a", "p.a"]]
    assert import_cycles([Import("p.a", "p.b", 1), Import("p.a", "p.c", 1), Import("p.b", "p.c", 1)]) == []


def test_parser_sees_every_kind_of_import(tmp_path: Path) -> None:
    files = {
        "pkg/__init__.py": "from pkg.low import x\n",
        "pkg/low.py": "x = 1\n",
        "pkg/sub/__init__.py": "from . import mid\n",
        "pkg/sub/mid.py": """
            from __future__ import annotations
            import os
            from typing import TYPE_CHECKING
            from .. import low
            from ..low import x
            from pkg import sub
            if TYPE_CHECKING:
                from pkg.high import Thing
            def lazy():
                import pkg.high
                import importlib
                return importlib.import_module("pkg.low")
        """,
        "pkg/high.py": "import json\nfrom pkg.sub.mid import lazy\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(textwrap.dedent(text))
    modules, imports = import_graph(tmp_path, "pkg")
    assert sorted(modules) == ["pkg", "pkg.high", "pkg.low", "pkg.sub", "pkg.sub.mid"]
    edges = sorted((i.source, i.target, i.line) for i in imports)
    assert edges == [
        ("pkg", "pkg.low", 1),
        ("pkg.high", "pkg.sub.mid", 2),
        ("pkg.sub", "pkg.sub.mid", 1),
        ("pkg.sub.mid", "pkg.high", 9),
        ("pkg.sub.mid", "pkg.high", 11),
        ("pkg.sub.mid", "pkg.low", 5),
        ("pkg.sub.mid", "pkg.low", 6),
        ("pkg.sub.mid", "pkg.low", 13),
        ("pkg.sub.mid", "pkg.sub", 7),
    ]
    table = {"pkg.low": "base", "pkg.sub.*": "passes", "pkg.high": "converter", "pkg": "cli"}
    assert upward_imports(imports, table) == [
        "pkg.sub.mid (passes) line 11 imports pkg.high (converter)",
        "pkg.sub.mid (passes) line 9 imports pkg.high (converter)",
    ]
    assert import_cycles(imports) == [["pkg.high", "pkg.sub.mid", "pkg.high"], ["pkg.sub", "pkg.sub.mid", "pkg.sub"]]
