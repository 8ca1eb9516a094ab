"""Bad inputs and faults (issue 14) that only a whole entry point run can show: each one sentence, or fixed.

The checks themselves have unit tests (test_config, test_data, test_logits, test_stages, test_training,
test_list_lt, test_cli); what is left here is what needs a trained run, a real process or a real file
system: that an entry point goes through the check, and that the operating system's refusal reaches
the user as one line.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from unittest import mock

import pytest
from safetensors import SafetensorError

from argse import train_experts, train_gating
from tests.fault_harness import (
    Result,
    Workspace,
    assert_one_error,
    assert_succeeded,
    can_drop_privileges,
    experts_process,
    has_user_namespaces,
    logits,
    run,
    run_process,
    sets,
    tmpfs_prefix,
)

needs_user_namespaces = pytest.mark.skipif(not has_user_namespaces(), reason="no user namespaces here (unshare)")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return Workspace(tmp_path_factory.mktemp("faults"))


def gating(folder: Path) -> Result:
    return run(train_gating.main, ["--experts", "ce", *sets(folder)])


def test_train_experts_says_where_its_outputs_went(workspace):
    assert_succeeded(workspace.trained, "ce: temperature")
    assert "published" in workspace.trained.text and "stages/expert-ce-" in workspace.trained.text


def test_train_gating_says_where_its_outputs_went(workspace):
    result = gating(workspace.fresh())
    assert_succeeded(result, "gate and mixture:")


def test_train_gating_checks_its_sources_against_the_split_manifest(workspace):
    """The fields one by one are test_logits' job; this is that train_gating reads through that check: a
    published file replaced by another split's is refused, whatever its stage record says."""
    folder = workspace.fresh()
    shutil.copy(logits(folder, "ce", "val"), logits(folder, "ce", "test"))
    assert_one_error(gating(folder), "field 'split' does not match the run's split manifest")


def test_disk_full_while_safetensors_writes_a_checkpoint(workspace):
    """ENOSPC as safetensors' Rust writer reports it (a SafetensorError, not an OSError) at last.safetensors."""
    import argse.core.storage

    real = argse.core.storage.save_file

    def full(tensors, filename, metadata=None):
        if ".last.safetensors." in filename:
            raise SafetensorError(
                f'Error while serializing: I/O error: No space left on device (os error 28) at path "{filename}"'
            )
        return real(tensors, filename, metadata=metadata)

    with mock.patch.object(argse.core.storage, "save_file", full):
        # --rebuild: the copy holds a trained ce, which train_experts would otherwise find and not train again
        result = run(train_experts.main, ["--experts", "ce", "--rebuild", *sets(workspace.fresh())])
    assert_one_error(result, "last.safetensors: No space left on device")


@needs_user_namespaces
def test_read_only_output_folder(workspace):
    """A real read-only file system (EROFS): a tmpfs mounted ro in a user namespace."""
    folder = workspace.root / "readonly"
    result = run_process(experts_process(folder), tmpfs_prefix(folder, "ro,size=64k"))
    assert_one_error(result, "Read-only file system; make its folder writable")


@needs_user_namespaces
def test_full_disk(workspace):
    """A real full file system (ENOSPC): a 48 KiB tmpfs, full before the first checkpoint is written."""
    folder = workspace.root / "full"
    result = run_process(experts_process(folder), tmpfs_prefix(folder, "size=48k"))
    assert_one_error(result, "No space left on device; files written before are intact")


@pytest.mark.skipif(not can_drop_privileges(), reason="running as root without setpriv")
def test_output_folder_not_writable(workspace):
    """A folder the user may not write (EACCES): 0555 as a user, a root folder for 'nobody' as root."""
    folder = workspace.root / "others"
    folder.mkdir()
    folder.chmod(0o555)
    prefix = []
    if os.geteuid() == 0:  # root writes anywhere: run the command as 'nobody'
        workspace.root.chmod(0o755)
        prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    result = run_process(experts_process(folder / "sub"), prefix)
    assert_one_error(result, "Permission denied; make its folder writable")


def test_an_empty_test_split_is_refused_before_training(tmp_path):
    """data.test_fraction too small for a class's official test images: one sentence, and nothing trained."""
    result = run(train_experts.main, ["--experts", "ce", *sets(tmp_path, **{"data.test_fraction": "0.01"})])
    assert_one_error(result, "data.test_fraction=0.01 leaves class 'class_0'")
    assert not (tmp_path / "checkpoints").exists() or not any((tmp_path / "checkpoints").rglob("*.safetensors"))


def test_negative_parallel_is_one_sentence(tmp_path):
    result = run(train_experts.main, ["--experts", "ce", "--parallel", "-1", *sets(tmp_path)])
    assert_one_error(result, "--parallel must be >= 0 (N processes; 0 or no value: one per visible GPU), got -1")


def test_a_run_name_that_leaves_the_output_folder_is_refused(tmp_path):
    result = run(train_experts.main, ["--experts", "ce", *sets(tmp_path / "o", name="../../escaped")])
    assert_one_error(result, "name must be a plain folder name")
    assert not (tmp_path / "escaped").exists()
