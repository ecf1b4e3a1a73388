"""Every option of fp8conv, once: the commands' flags, the config-file keys, the Python keywords.

:data:`OPTIONS` is the schema. Each :class:`Option` has one name, spelled three ways: ``max_samples`` is the
flag ``--max-samples``, the config-file key ``max_samples`` (``max-samples`` is read too) and the keyword
``max_samples=`` of :func:`fp8conv.convert`, :func:`fp8conv.convert_file` and :func:`fp8conv.convert_and_verify`.
A boolean option ``audit`` is the flag pair ``--audit``/``--no-audit``, the key ``audit: false`` and
``audit=False``. From the schema come:

* the click options of ``fp8conv convert`` and ``fp8conv verify`` (:mod:`fp8conv.cli.schema_options`);
* the config-file keys (:mod:`fp8conv.config`): a file can hold everything a command line can (``model``,
  ``data``, ``output``, gates, ...); the command line overrides the file, option by option;
* the checks of the keyword arguments of the Python API (:func:`keyword_settings`): an unknown keyword is an
  error listing the close names, a bad value one line naming the option;
* the option table of the README (:func:`markdown_table`; ``python -m fp8conv.options --write README.md``
  regenerates it between its markers, ``--check`` fails when it is stale).

The spellings ``target``, ``max_calibration_samples`` and ``auto_int16_below_db`` of earlier config files
(the :class:`~fp8conv.config.ConversionConfig` field names) still work, with a one-line deprecation warning
naming the new key.

Options that contradict each other, or that another option makes do nothing, are refused (:data:`RULES`,
checked by :meth:`Settings.check`): ``--auto-int16`` without ``--data``, ``--int4-block-size`` with
``--to int8`` and no ``--int4`` pattern, gates with ``--no-verify``, ... Each refusal is one line naming the
option and why. One exception keeps a config file usable across runs: an option from the file that the
command line makes do nothing (``auto_int16: 25`` in the file, ``--to w8a16`` on the command line) is dropped
with a warning instead.
"""

from fp8conv.options.schema import (
    ACCURACY_GATES,
    API_FUNCTIONS,
    COMMANDS,
    FIELD_OPTIONS,
    GATE_OPTIONS,
    OPTIONS,
    ActivationRange,
    ActivationType,
    Kind,
    Option,
    Placement,
    ShardExecutor,
    Target,
    Task,
    WeightRange,
    WeightRounding,
    close_names,
    for_command,
    for_function,
    option,
)
from fp8conv.options.settings import (
    RULES,
    Rule,
    Setting,
    Settings,
    command_line_layer,
    file_layer,
    keyword_settings,
    same_path_as,
)
from fp8conv.options.table import default_text, markdown_table

__all__ = [
    "ACCURACY_GATES",
    "API_FUNCTIONS",
    "COMMANDS",
    "FIELD_OPTIONS",
    "GATE_OPTIONS",
    "OPTIONS",
    "RULES",
    "ActivationRange",
    "ActivationType",
    "Kind",
    "Option",
    "Placement",
    "Rule",
    "Setting",
    "Settings",
    "ShardExecutor",
    "Target",
    "Task",
    "WeightRange",
    "WeightRounding",
    "close_names",
    "command_line_layer",
    "default_text",
    "file_layer",
    "for_command",
    "for_function",
    "keyword_settings",
    "markdown_table",
    "option",
    "same_path_as",
]
