"""Optimisers as the recipes build them (speechbrain_wsm.recipe.optim)."""

import functools

import pytest
import torch

from speechbrain_wsm.recipe.brain import RecipeBrain, RobustBrain
from speechbrain_wsm.recipe.optim import make_optimizer

AdamW = functools.partial(torch.optim.AdamW, lr=1e-2, weight_decay=0.05)


def _params(device="cpu"):
    torch.manual_seed(0)
    return [torch.nn.Parameter(torch.randn(5, 3, device=device)) for _ in range(3)]


@pytest.mark.parametrize("cls", [torch.optim.Adam, torch.optim.AdamW])
def test_adam_and_adamw_take_the_fused_kernel(cls):
    assert make_optimizer(functools.partial(cls, lr=1e-3), _params()).defaults["fused"]
    assert make_optimizer(cls, _params(), lr=1e-3).defaults["fused"]


@pytest.mark.parametrize("choice", [{"fused": False}, {"foreach": True}])
def test_a_choice_in_the_yaml_is_kept(choice):
    opt = make_optimizer(functools.partial(AdamW, **choice), _params())
    assert not opt.defaults["fused"]
    assert opt.defaults["foreach"] == choice.get("foreach")


def test_other_optimisers_and_devices_are_built_as_given():
    assert not make_optimizer(torch.optim.SGD, _params(), lr=0.1).defaults["fused"]
    assert not make_optimizer(AdamW, _params("meta")).defaults["fused"]


def test_parameter_groups_and_generators():
    a, b, c = _params()
    groups = ({"params": (p for p in (a, b)), "weight_decay": 0.0}, {"params": [c]})
    opt = make_optimizer(AdamW, groups)
    assert opt.defaults["fused"]
    assert [len(g["params"]) for g in opt.param_groups] == [2, 1]
    assert opt.param_groups[0]["weight_decay"] == 0.0


def test_fused_updates_equal_the_loop_within_rounding():
    fused, loop = _params(), _params()
    opts = [
        make_optimizer(AdamW, fused),
        make_optimizer(functools.partial(AdamW, foreach=False), loop),
    ]
    assert opts[0].defaults["fused"] and not opts[1].defaults["fused"]
    for step in range(5):
        for ps, opt in zip((fused, loop), opts):
            for i, p in enumerate(ps):
                p.grad = torch.full_like(p, 0.1 * (i + 1) * (-1) ** step) + p.detach()
            opt.step()
    for p, q in zip(fused, loop):
        assert not torch.equal(p, _params()[0])  # the parameters moved
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)


class _Brain(RecipeBrain):
    def compute_forward(self, batch, stage):  # pragma: no cover - not trained
        raise NotImplementedError


def test_the_brains_build_fused_optimisers(tmp_path):
    model = torch.nn.Linear(3, 2)
    sb_brain = RobustBrain(
        modules={"model": model}, opt_class=AdamW, run_opts={"device": "cpu"}
    )
    sb_brain.init_optimizers()
    assert sb_brain.optimizer.defaults["fused"]
    assert sb_brain.opt_class is AdamW
    brain = _Brain(
        modules={"model": model},
        hparams={"model_opt_class": AdamW},
        run_opts={"device": "cpu"},
    )
    brain.init_optimizers()
    assert brain.optimizers_dict["model_optimizer"].defaults["fused"]


def test_a_checkpoint_keeps_the_kernel_the_optimiser_was_built_with():
    """PyTorch restores each group's saved ``fused`` and ``foreach``: an
    unfused checkpoint would turn a fused optimiser back into the loop, and
    a gradient scaler's step would then fail."""
    old = torch.optim.AdamW(_params(), lr=1e-2, foreach=False)  # an older run
    for p in old.param_groups[0]["params"]:
        p.grad = torch.ones_like(p)
    old.step()
    params = _params()
    opt = make_optimizer(AdamW, params)
    opt.load_state_dict(old.state_dict())
    assert opt.param_groups[0]["fused"] and opt.param_groups[0]["foreach"] is None
    scaler = torch.amp.GradScaler("cpu")
    scaler.scale(sum(p.sum() for p in params)).backward()
    scaler.step(opt)  # unfused groups in a fused optimiser: AssertionError
    scaler.update()
    # and the other way: a YAML that turned fusing off stays off
    loop = make_optimizer(functools.partial(AdamW, fused=False), _params())
    loop.load_state_dict(opt.state_dict())
    assert not loop.param_groups[0]["fused"]


def test_inputs_plain_adamw_accepts():
    w, v = _params()[:2]
    assert make_optimizer(AdamW, [{"params": w}]).defaults["fused"]
    assert make_optimizer(AdamW, [("w", w), ("v", v)]).defaults["fused"]
    differentiable = functools.partial(AdamW, differentiable=True)
    assert not make_optimizer(differentiable, [w]).defaults["fused"]

    class OwnAdam(torch.optim.Adam):  # a subclass without a fused argument
        def __init__(self, params, lr=1e-3):
            super().__init__(params, lr=lr)

    assert not make_optimizer(OwnAdam, [w]).defaults["fused"]


def test_a_kernel_choice_pytorch_refuses_is_a_one_line_config_error():
    from speechbrain_wsm.errors import ConfigError

    w = torch.nn.Parameter(torch.zeros(3))
    adamw = functools.partial(torch.optim.AdamW, lr=1e-3, fused=True, foreach=True)
    with pytest.raises(ConfigError, match="AdamW with foreach: True, fused: True: "):
        make_optimizer(adamw, [w])
    with pytest.raises(ValueError, match="Invalid learning rate") as other:
        make_optimizer(functools.partial(AdamW, lr=-1.0, foreach=True), [w])
    assert not isinstance(other.value, ConfigError)  # not about the kernel
