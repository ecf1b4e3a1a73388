from click.testing import CliRunner

from fp8conv.cli import cli
from fp8conv.runtime.formats import FORMATS


def test_formats_lists_every_named_format_with_its_max():
    result = CliRunner().invoke(cli, ["formats"])
    assert result.exit_code == 0
    lines = result.output.splitlines()[1:]
    assert [line.split()[0] for line in lines] == list(FORMATS)
    assert "448" in lines[0]
    assert "57344" in lines[2]
