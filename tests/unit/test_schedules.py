"""The step schedule of the CTC recipes: shape, per-group peaks, resume."""

import pytest
import torch
from speechbrain.utils.checkpoints import Checkpointer

from speechbrain_wsm.recipe.schedules import TriStageSchedule


def test_warmup_hold_decay_shape():
    s = TriStageSchedule(warmup=0.1, hold=0.4, init_scale=0.01, final_scale=0.05)
    s.set_total_steps(1000)
    scales = [s.scale(n) for n in range(0, 1201)]
    assert scales[0] == pytest.approx(0.01)
    assert all(a <= b for a, b in zip(scales[:100], scales[1:101], strict=True))
    assert all(x == 1.0 for x in scales[100:500])  # the hold: never annealed
    assert all(a >= b for a, b in zip(scales[500:1000], scales[501:1001], strict=True))
    assert scales[1000] == pytest.approx(0.05) and scales[1200] == pytest.approx(0.05)


def test_every_group_keeps_its_own_peak_rate():
    a = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    b = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-5)
    s = TriStageSchedule(warmup=0.5, hold=0.0, init_scale=0.0)
    s.set_total_steps(10)
    assert s.apply([a, b]) == 0.0 and a.param_groups[0]["lr"] == 0.0
    for _ in range(5):
        s.advance([a, b])
    assert a.param_groups[0]["lr"] == pytest.approx(1e-3)
    assert b.param_groups[0]["lr"] == pytest.approx(1e-5)


def test_a_resumed_schedule_continues_where_it_stopped(tmp_path):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    first = TriStageSchedule()
    first.set_total_steps(100)
    for _ in range(37):
        first.advance([opt])
    Checkpointer(tmp_path, {"schedule": first}).save_checkpoint()
    again = TriStageSchedule()
    Checkpointer(tmp_path, {"schedule": again}).recover_if_possible()
    again.set_total_steps(100)
    assert again.step == 37 and again.scale(again.step) == first.scale(37)


@pytest.mark.parametrize(
    "kwargs", [{"warmup": 0.7, "hold": 0.5}, {"final_scale": 0.0}, {"warmup": -0.1}]
)
def test_bad_shares_are_refused(kwargs):
    with pytest.raises(ValueError):
        TriStageSchedule(**kwargs)


def test_unset_length_is_an_error():
    with pytest.raises(RuntimeError, match="set_total_steps"):
        TriStageSchedule().scale(0)
