"""The benchmark machinery: memory and time measurement, target checks, outputs."""

import json

import torch

from speechbrain_wsm.bench import layers
from speechbrain_wsm.bench.common import peak_memory, timings
from speechbrain_wsm.nnet.lean_mixing import compile_backend


class _Alloc:
    """A step that holds ``mib`` MiB of tensors at its peak."""

    def __init__(self, mib):
        self.mib = mib

    def __call__(self, device):
        def step():
            x = torch.ones(self.mib * 2**18, device=device)  # float32: 4 bytes
            return float(x.sum())

        return step


def test_cpu_peak_memory_sees_what_a_step_allocates():
    small = peak_memory(_Alloc(8), "cpu")["peak_bytes"] / 2**20
    big = peak_memory(_Alloc(200), "cpu")["peak_bytes"] / 2**20
    assert 190 <= big <= 260, big
    assert small < 40, small


def _broken(device):
    raise RuntimeError("no such kernel")


def test_timings_interleave_and_report_failures():
    res = timings({"ok": _Alloc(1), "broken": _broken}, "cpu", rounds=3, budget_s=5)
    assert res["ok"]["rounds"] == 3 and res["ok"]["time_s"] > 0
    assert res["ok"]["time_s"] <= res["ok"]["time_median_s"]
    assert "no such kernel" in res["broken"]["error"]


def _rows(times):
    return [
        {"device": "cpu", "mixer": m, "seconds": s, "time_ms": t, "peak_mib": 1.0}
        for (m, s), t in times.items()
    ]


def test_targets_are_checked_on_ratios():
    good = {
        ("sdpa", 20): 70, ("sdpa", 80): 800,
        ("sm_concat", 20): 20, ("sm_concat", 80): 80,
        ("sm", 20): 15, ("sm", 80): 60,
        ("wsm_w32", 20): 24, ("wsm_w32", 80): 100,
    }  # fmt: skip
    checks = {c["target"]: c["ok"] for c in layers.check_targets(_rows(good), [32])}
    assert all(ok in (True, None) for ok in checks.values()), checks
    slow = dict(good)
    slow[("wsm_w32", 80)] = 200  # quadratic-looking growth, too slow vs SDPA
    checks = {c["target"]: c["ok"] for c in layers.check_targets(_rows(slow), [32])}
    assert checks["WSM time 80 s / 20 s <= 4.6"] is False
    assert checks["SDPA / WSM time at 80 s >= 6.0"] is False
    assert checks["SDPA / WSM time at 20 s >= 2.2"] is True


def test_quick_run_writes_table_json_and_plot(tmp_path):
    assert layers.main(["--quick", "--device", "cpu", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "layers_cpu.json").read_text())
    mixers = {r["mixer"] for r in data["rows"]}
    assert mixers == {"sdpa", "sb_mha", "sm_concat", "sm", "wsm_w4"}
    assert all(r["time_ms"] > 0 and r["peak_mib"] >= 0 for r in data["rows"])
    assert "machine" in data["meta"] and data["meta"]["targets"]
    assert (tmp_path / "layers_cpu.csv").read_text().startswith("device,mixer")
    assert (tmp_path / "layers_cpu.png").stat().st_size > 10_000


def test_compile_adds_compiled_twins_of_named_mixers(monkeypatch):
    specs = layers.mixer_specs([8], compiled=["wsm_w8"])
    assert specs["wsm_w8_compiled"] == ("wsm", {"window_size": 8}, True)
    assert specs["wsm_w8"][2] is False and "sm_compiled" not in specs
    lean = layers.mixer_specs([8], recompute=["sm"])["sm_recompute"]
    assert lean == ("sm", {"recompute": True}, False)
    plain = layers.mixer_specs([8], plain=["wsm_w8"])["wsm_w8_plain"]
    assert plain == ("wsm", {"window_size": 8, "lean": False}, False)
    step = layers.LayerStep(*plain[:2], 0.2, 1, 16, 2, torch.float32, False)
    step("cpu")()  # the registry's mixers take lean=False
    try:
        layers.mixer_specs([8], recompute=["sdpa"])  # attention has no projections MLP
    except SystemExit as e:
        assert "sdpa" in str(e)
    else:
        raise AssertionError("--recompute of an attention must be refused")
    try:
        layers.mixer_specs([8], compiled=["wsm_w32"])
    except SystemExit as e:
        assert "wsm_w32" in str(e)
    else:
        raise AssertionError("an unknown --compile label must be refused")
    # only the twin goes through torch.compile
    compiled = []
    monkeypatch.setattr(torch, "compile", lambda m, **kw: compiled.append((m, kw)) or m)
    args = ("wsm", {"window_size": 8}, 0.2, 1, 16, 2, torch.float32)
    layers.LayerStep(*args, False)("cpu")()
    assert compiled == []
    layers.LayerStep(*args, True)("cpu")()
    assert len(compiled) == 1 and compiled[0][0].window_size == 8
    assert compiled[0][1] == {"backend": compile_backend}  # as compile_layers does


def test_block_times_a_conformer_layer_compiled_as_the_recipes_compile_it(monkeypatch):
    from speechbrain_wsm.nnet.encoders import MixerEncoder

    compiled = []
    monkeypatch.setattr(
        MixerEncoder, "compile_layers", lambda self: compiled.append(self)
    )
    args = ("wsm", {"window_size": 8}, 0.2, 1, 16, 2, torch.float32)
    layers.LayerStep(*args, False, True)("cpu")()
    assert compiled == []
    layers.LayerStep(*args, True, True)("cpu")()
    (enc,) = compiled
    assert len(enc.layers) == 1 and enc.layers[0].mixer.window_size == 8
    assert enc.layers[0].training  # dropout on, as in training


def test_compiled_twins_are_checked_against_their_eager_selves():
    rows = _rows({
        ("sm", 20): 10.0, ("sm_compiled", 20): 9.0,
        ("sm", 60): 30.0, ("sm_compiled", 60): 29.0,
        ("wsm_w32", 20): 10.0, ("wsm_w32_compiled", 20): 9.0,
        ("wsm_w32", 60): 30.0, ("wsm_w32_compiled", 60): 33.0,
    })  # fmt: skip
    checks = {c["target"]: c for c in layers.check_targets(rows, [32])}
    assert checks["sm compiled / eager time <= 1.0"]["ok"] is True
    wsm = checks["wsm_w32 compiled / eager time <= 1.0"]
    assert wsm["ok"] is False and abs(wsm["measured"] - 1.1) < 1e-9  # the worst length
    assert "WSM time 80 s / 20 s <= 4.6" in checks  # the mixer targets stay
    # one Conformer layer per mixer: the ratios are reported, nothing else applies
    block = {c["target"]: c for c in layers.check_targets(rows, [32], block=True)}
    assert set(block) == {
        "sm compiled / eager time (info)",
        "wsm_w32 compiled / eager time (info)",
    }
    assert block["wsm_w32 compiled / eager time (info)"]["ok"] is None
