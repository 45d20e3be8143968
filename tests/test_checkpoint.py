"""Model files: durable once written, and errors that name the file the user asked for."""

import os
import stat

import numpy as np
import pytest

from streammlp import MLP, checkpoint


def test_write_fsyncs_the_directory_after_the_rename(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def fsync(fd):
        synced.append((stat.S_ISDIR(os.fstat(fd).st_mode), os.path.exists(tmp_path / "m.npz")))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    checkpoint.write(tmp_path / "m.npz", {"params": np.arange(3.0)})
    # The file's data first (before the rename), then the directory holding the new name.
    assert synced == [(False, False), (True, True)]
    assert checkpoint.read(tmp_path / "m.npz")["params"].tolist() == [0.0, 1.0, 2.0]


def test_an_unwritable_path_is_named_and_leaves_nothing_behind(tmp_path):
    target = tmp_path / "missing" / "x.npz"
    with pytest.raises(OSError, match=f"cannot write {target}") as caught:
        MLP([3, 4, 1]).save(target)
    assert ".tmp" not in str(caught.value)
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro" / "x.npz.tmp").mkdir()  # the temporary name taken: open fails
    with pytest.raises(OSError, match="cannot write"):
        MLP([3, 4, 1]).save(tmp_path / "ro" / "x.npz")
