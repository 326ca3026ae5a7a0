"""Checkpoints survive a killed save or a full disk (issue 12, item 1)."""

import errno
import logging
import pathlib

import pytest
import torch
from speechbrain.utils.checkpoints import Checkpointer
from speechbrain.utils.epoch_loop import EpochCounter

from speechbrain_wsm.recipe.checkpoints import (
    RobustCheckpointer,
    newest_complete_checkpoint,
    recover_checkpoint,
)

RECIPES = pathlib.Path(__file__).resolve().parents[2] / "recipes"


def _net(value):
    net = torch.nn.Linear(3, 2)
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(value)
    return net


def _two_checkpoints(folder, cls=RobustCheckpointer, meta=({}, {})):
    """An older and a newer checkpoint of a net whose weights are 1 then 2."""
    net = _net(1.0)
    ckpter = cls(folder, {"net": net})
    old = ckpter.save_checkpoint(meta=meta[0])
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(2.0)
    new = ckpter.save_checkpoint(meta=meta[1])
    return old, new


def _recover(folder):
    net = _net(0.0)
    ckpt = RobustCheckpointer(folder, {"net": net}).recover_if_possible()
    return ckpt, float(net.weight[0, 0].detach())


def _truncate(path):
    data = pathlib.Path(path).read_bytes()
    pathlib.Path(path).write_bytes(data[: len(data) // 2])


def test_truncated_newest_ckpt_falls_back_to_older(tmp_path, caplog):
    old, new = _two_checkpoints(tmp_path)
    _truncate(new.paramfiles["net"])
    with caplog.at_level(logging.WARNING):
        ckpt, weight = _recover(tmp_path)
    assert ckpt.path == old.path and weight == 1.0
    assert str(new.path) in caplog.text and "truncated" in caplog.text


def test_truncated_ckpt_of_a_plain_speechbrain_checkpointer(tmp_path, caplog):
    # runs recorded before RobustCheckpointer: no recorded sizes, zip check only
    old, new = _two_checkpoints(tmp_path, cls=Checkpointer)
    _truncate(new.paramfiles["net"])
    with caplog.at_level(logging.WARNING):
        ckpt, weight = _recover(tmp_path)
    assert ckpt.path == old.path and weight == 1.0
    assert str(new.path) in caplog.text


def test_empty_marker_is_skipped_with_a_warning(tmp_path, caplog):
    old, new = _two_checkpoints(tmp_path)
    (new.path / "CKPT.yaml").write_bytes(b"")
    with caplog.at_level(logging.WARNING):
        ckpt, weight = _recover(tmp_path)
    assert ckpt.path == old.path and weight == 1.0
    assert str(new.path) in caplog.text and "CKPT.yaml" in caplog.text


class _DiesWhileSaving:
    """A recoverable whose save is killed half-way (after writing some bytes)."""

    def __init__(self, error):
        self.error = error

    def save(self, path):
        pathlib.Path(path).write_bytes(b"PK\x03\x04 half a file")
        raise self.error

    def load(self, path, end_of_epoch):
        del path, end_of_epoch


def test_marker_is_written_last(tmp_path):
    net = _net(1.0)
    ckpter = RobustCheckpointer(tmp_path, {"net": net})
    good = ckpter.save_checkpoint()
    dying = _DiesWhileSaving(KeyboardInterrupt())
    ckpter.add_recoverable("zzz", dying, _DiesWhileSaving.load, _DiesWhileSaving.save)
    with pytest.raises(KeyboardInterrupt):
        ckpter.save_checkpoint()
    partial = [p for p in tmp_path.iterdir() if p != good.path]
    assert len(partial) == 1 and not (partial[0] / "CKPT.yaml").exists()
    assert not (partial[0] / "zzz.ckpt").exists()  # never under its final name
    assert [c.path for c in ckpter.list_checkpoints()] == [good.path]
    ckpter.recoverables.pop("zzz")
    ckpter.save_and_keep_only(num_to_keep=5)  # pruning removes the partial folder
    assert not partial[0].exists()


def test_full_disk_says_no_space_left(tmp_path):
    net = _net(1.0)
    ckpter = RobustCheckpointer(tmp_path, {"net": net})
    good = ckpter.save_checkpoint()
    # torch's zip writer reports a short write on a full disk like this
    full = RuntimeError(
        "[enforce fail at inline_container.cc:626] . unexpected pos 64 vs 0"
    )
    dying = _DiesWhileSaving(full)
    ckpter.add_recoverable(
        "optimizer", dying, _DiesWhileSaving.load, _DiesWhileSaving.save
    )
    with pytest.raises(OSError, match="no space left on device") as info:
        ckpter.save_checkpoint()
    assert info.value.errno == errno.ENOSPC and "optimizer.ckpt" in str(info.value)
    assert [p for p in tmp_path.iterdir()] == [good.path]  # partial folder removed


def test_other_save_errors_are_not_called_a_full_disk(tmp_path):
    dying = _DiesWhileSaving(RuntimeError("some bug"))
    ckpter = RobustCheckpointer(tmp_path)
    ckpter.add_recoverable("x", dying, _DiesWhileSaving.load, _DiesWhileSaving.save)
    with pytest.raises(RuntimeError, match="some bug"):
        ckpter.save_checkpoint()


def test_a_checkpoint_that_fails_to_load_falls_back(tmp_path, caplog):
    counter = EpochCounter(10)
    ckpter = RobustCheckpointer(tmp_path, {"counter": counter})
    counter.current = 3
    old = ckpter.save_checkpoint()
    counter.current = 4
    new = ckpter.save_checkpoint()
    # same size, passes the file checks, but is not a number
    (new.path / "counter.ckpt").write_text("x")
    again = EpochCounter(10)
    with caplog.at_level(logging.WARNING):
        got = RobustCheckpointer(tmp_path, {"counter": again}).recover_if_possible()
    assert got.path == old.path and again.current == 3
    assert str(new.path) in caplog.text


def test_evaluate_recover_best_skips_broken_best(tmp_path, caplog):
    # the best checkpoint by CER is broken: the next best loads, with a warning
    meta = ({"CER": 30.0}, {"CER": 10.0})
    old, new = _two_checkpoints(tmp_path, cls=Checkpointer, meta=meta)
    _truncate(new.paramfiles["net"])
    net = _net(0.0)
    with caplog.at_level(logging.WARNING):
        ckpt = recover_checkpoint(Checkpointer(tmp_path, {"net": net}), "best")
    assert ckpt.path == old.path and float(net.weight[0, 0].detach()) == 1.0
    assert str(new.path) in caplog.text


def test_newest_complete_checkpoint(tmp_path):
    old, new = _two_checkpoints(tmp_path)
    assert newest_complete_checkpoint(tmp_path).path == new.path
    _truncate(new.paramfiles["net"])
    assert newest_complete_checkpoint(tmp_path).path == old.path
    _truncate(old.paramfiles["net"])
    assert newest_complete_checkpoint(tmp_path) is None


def test_every_recipe_uses_the_robust_checkpointer():
    yamls = sorted(RECIPES.rglob("*.yaml"))
    built = [p for p in yamls if "checkpointer: !new:" in p.read_text()]
    assert len(built) > 10, "the recipe YAMLs no longer build their checkpointers"
    robust = "checkpointer: !new:speechbrain_wsm.recipe.checkpoints.RobustCheckpointer"
    assert [str(p) for p in built if robust not in p.read_text()] == []


def test_pretrained_folder_loads_the_newest_complete_checkpoint(tmp_path, caplog):
    # a pretraining run killed while writing its newest wav2vec2.ckpt: probes
    # and fine-tuning pointed at the folder load the older complete one
    from tiny_models import save_tiny_wav2vec2

    from speechbrain_wsm.models.upstream import load_upstream
    from speechbrain_wsm.models.wav2vec2 import find_checkpoint

    folder = save_tiny_wav2vec2(tmp_path / "run")
    (good,) = (tmp_path / "run" / "save").iterdir()
    broken = good.parent / "CKPT+9999-12-31+23-59-59+00"  # sorts as the newest
    broken.mkdir()
    meta = (good / "CKPT.yaml").read_text().replace("unixtime:", "unixtime: 9")
    (broken / "CKPT.yaml").write_text(meta)
    data = (good / "wav2vec2.ckpt").read_bytes()
    (broken / "wav2vec2.ckpt").write_bytes(data[: len(data) // 3])
    with caplog.at_level(logging.WARNING):
        assert find_checkpoint(folder).parent == good
        upstream = load_upstream(folder, frozen=True)
    assert str(broken) in caplog.text
    hidden, lengths = upstream(torch.randn(1, 8000), torch.tensor([8000]))
    assert len(hidden) > 1 and int(lengths[0]) > 0
