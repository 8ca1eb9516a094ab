"""Every --out a user names is checked before the command's work: only a new or regular file, never an input."""

from __future__ import annotations

import pytest

from argse import cli, reproduce, table2
from argse.core.errors import ArgseError
from argse.core.storage import check_destination


@pytest.mark.parametrize("command", [table2.main, reproduce.main])
def test_table2_and_reproduce_refuse_a_link_before_any_training(command, tmp_path, tiny, capsys):
    target = tmp_path / "kept.md"
    target.write_text("mine")
    (tmp_path / "link.md").symlink_to(target)
    argv = [x for s in tiny for x in ("--set", s)] + ["--out", str(tmp_path / "link.md")]
    assert cli.run(command, argv) == 2
    assert "is a symbolic link, which would be replaced by a file" in capsys.readouterr().err
    assert target.read_text() == "mine" and not (tmp_path / "outputs").exists()  # nothing trained or written


def test_a_destination_is_a_new_or_regular_file_that_is_no_input(tmp_path):
    (tmp_path / "in.png").write_bytes(b"x")
    check_destination(tmp_path / "new.md")
    with pytest.raises(ArgseError, match=r"is a folder; give a file path such as .*page\.md$"):
        check_destination(tmp_path)
    with pytest.raises(ArgseError, match=r"folder .* does not exist; create it first"):
        check_destination(tmp_path / "missing" / "p.md")
    with pytest.raises(ArgseError, match=r"is the input .*in\.png, which would be overwritten"):
        check_destination(tmp_path / "in.png", [tmp_path / "in.png"])
