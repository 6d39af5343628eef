# SPDX-License-Identifier: GPL-2.0-or-later
"""A training's checkpoint files (core/tools/train/checkpoints.py): ``last.pth`` and ``best.pth`` name complete
checkpoints at every moment; each epoch is written over the bytes of a slot neither names (the same file, not a new
one); an interrupted write leaves both names on the epochs before; without hard links, new files and a copy of the
best weights, as before."""

from __future__ import annotations

import os

import pytest

torch = pytest.importorskip("torch")

from dltools.core.tools.train.checkpoints import BEST, LAST, CheckpointFiles  # noqa: E402


def _payload(epoch: int) -> dict:
    return {"model": {"weight": torch.full((64, 64), float(epoch))}, "optimizer": {"step": torch.tensor(epoch)},
            "epoch": epoch}


def _epoch(path) -> int:  # noqa: ANN001
    saved = torch.load(str(path), weights_only=True)
    assert torch.equal(saved["model"]["weight"], torch.full((64, 64), float(saved["epoch"])))
    return saved["epoch"]


def _names(folder) -> list[str]:  # noqa: ANN001
    return sorted(p.name for p in folder.iterdir())


def test_a_rising_score_takes_two_slots_in_turn_written_in_place(tmp_path):
    files = CheckpointFiles(tmp_path)
    inodes = []
    for epoch in range(1, 5):
        files.write(torch, _payload(epoch), best=True)
        assert _epoch(tmp_path / LAST) == _epoch(tmp_path / BEST) == epoch
        assert os.path.samefile(tmp_path / LAST, tmp_path / BEST)
        inodes.append(os.stat(tmp_path / LAST).st_ino)
    assert _names(tmp_path) == [BEST, LAST, "slot-0.pth", "slot-1.pth"]
    # epochs 3 and 4 were written over the files of epochs 1 and 2: the same files, not new ones
    assert inodes[2] == inodes[0] and inodes[3] == inodes[1] and inodes[0] != inodes[1]


def test_the_best_epoch_stays_while_later_ones_are_written_then_the_spare_slot_is_pruned(tmp_path):
    files = CheckpointFiles(tmp_path)
    files.write(torch, _payload(1), best=True)
    files.write(torch, _payload(2), best=True)
    for epoch in (3, 4, 5):
        files.write(torch, _payload(epoch), best=False)
        assert (_epoch(tmp_path / LAST), _epoch(tmp_path / BEST)) == (epoch, 2)
    assert _names(tmp_path) == [BEST, LAST, "slot-0.pth", "slot-1.pth", "slot-2.pth"]
    files.prune()
    assert _names(tmp_path) == [BEST, LAST, "slot-0.pth", "slot-1.pth"]
    assert (_epoch(tmp_path / LAST), _epoch(tmp_path / BEST)) == (5, 2)
    files.write(torch, _payload(6), best=True)  # after a prune, a resumed training goes on
    assert (_epoch(tmp_path / LAST), _epoch(tmp_path / BEST)) == (6, 6)


def test_a_write_interrupted_halfway_leaves_both_names_on_complete_checkpoints(tmp_path, monkeypatch):
    files = CheckpointFiles(tmp_path)
    files.write(torch, _payload(1), best=True)
    files.write(torch, _payload(2), best=False)
    real_save = torch.save

    def dies_halfway(obj, f):  # noqa: ANN001, ANN202
        real_save(obj, f)
        f.seek(100)
        f.write(b"\0" * 200)  # the slot's bytes damaged, as a crash in the middle of writing leaves them
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", dies_halfway)
    with pytest.raises(OSError, match="No space left"):
        files.write(torch, _payload(3), best=True)
    monkeypatch.setattr(torch, "save", real_save)
    assert (_epoch(tmp_path / LAST), _epoch(tmp_path / BEST)) == (2, 1)
    files.write(torch, _payload(3), best=True)  # the damaged slot is simply written over next time
    assert (_epoch(tmp_path / LAST), _epoch(tmp_path / BEST)) == (3, 3)


def test_without_hard_links_each_checkpoint_is_a_new_file_and_the_best_a_copy_of_its_weights(tmp_path, monkeypatch):
    from dltools.core.tools.train import checkpoints

    def no_links(*args):  # noqa: ANN002, ANN202
        raise OSError("hard links are not supported")

    monkeypatch.setattr(checkpoints.os, "link", no_links)
    files = CheckpointFiles(tmp_path)
    files.write(torch, _payload(1), best=True)
    files.write(torch, _payload(2), best=False)
    assert _names(tmp_path) == [BEST, LAST]  # no slot, partial or link file left
    assert _epoch(tmp_path / LAST) == 2
    best = torch.load(str(tmp_path / BEST), weights_only=True)
    assert set(best) == {"model", "epoch"} and _epoch(tmp_path / BEST) == 1


def test_a_slot_with_a_name_outside_the_folder_is_not_written_over(tmp_path):
    """A folder copied with hard links (``cp -al``) shares its slots with the original: resuming in the copy writes
    new files there and leaves the original's checkpoints as they were."""
    original, copy = tmp_path / "original", tmp_path / "copy"
    original.mkdir()
    files = CheckpointFiles(original)
    for epoch in (1, 2, 3):
        files.write(torch, _payload(epoch), best=epoch == 1)
    copy.mkdir()
    for p in original.iterdir():
        os.link(p, copy / p.name)
    CheckpointFiles(copy).write(torch, _payload(4), best=True)
    assert (_epoch(copy / LAST), _epoch(copy / BEST)) == (4, 4)
    assert (_epoch(original / LAST), _epoch(original / BEST)) == (3, 1)
    assert sorted(_epoch(p) for p in original.glob("slot-*.pth")) == [1, 2, 3]
