"""``bench.pretrain --fill``: fill batches, throughput, MFU, item 4 targets."""

import csv

from speechbrain_wsm.bench import pretrain
from speechbrain_wsm.bench.layers import check_targets as layer_targets
from speechbrain_wsm.bench.pretrain_fill import fill_targets


def test_quick_fill_run_writes_shared_and_fill_rows(tmp_path):
    argv = ["--quick", "--device", "cpu", "--fill", "--mixers", "mhsa", "sm",
            "--fill-mixers", "sm", "--out", str(tmp_path)]  # fmt: skip
    assert pretrain.main(argv) == 0
    with open(tmp_path / "pretrain_fill_cpu.csv") as f:
        rows = list(csv.DictReader(f))
    phases = {(r["mixer"], r["phase"]) for r in rows}
    assert phases == {("mhsa", "shared"), ("sm", "shared"), ("sm", "fill")}
    fill = next(r for r in rows if r["phase"] == "fill")
    assert 1 <= int(fill["batch"]) <= 4  # --quick caps the batch at 4
    assert float(fill["audio_s_per_s"]) > 0 and float(fill["mfu"]) > 0
    assert float(fill["step_flop"]) > 0


def row(mixer, phase, time_ms, peak_mib, seconds=16, **extra):
    return {"device": "cuda", "mixer": mixer, "phase": phase, "seconds": seconds,
            "time_ms": time_ms, "peak_mib": peak_mib, **extra}  # fmt: skip


def test_fill_targets_are_the_issue_ratios():
    rows = [
        row("relpos_mhsa", "shared", 100, 100),
        row("mhsa", "shared", 80, 60),
        row("sm", "shared", 70, 50),
        row("wsm", "shared", 90, 70),
        row("mhsa", "fill", 1, 1, audio_s_per_s=1000.0, mfu=0.3),
        row("sm", "fill", 1, 1, audio_s_per_s=1300.0, mfu=0.4),
        row("wsm", "fill", 1, 1, audio_s_per_s=1100.0, mfu=0.2),
    ]
    got = {t["target"]: (round(t["measured"], 3), t["ok"]) for t in fill_targets(rows)}
    assert got["SM / relpos_mhsa time at 16 s (shared batch) <= 0.82"] == (0.7, True)
    assert got["SM / mhsa peak at 16 s (shared batch) <= 0.9"] == (0.833, True)
    assert got["WSM / mhsa time at 16 s (shared batch) <= 0.95"] == (1.125, False)
    assert got["SM / mhsa audio-s/s at 16 s, each at its fill batch >= 1.2"] == (
        1.3,
        True,
    )
    assert (
        got["WSM / mhsa audio-s/s at 16 s, each at its fill batch >= 1.2"][1] is False
    )
    assert got["MFU of SM at its fill batch, 16 s >= 0.35"] == (0.4, True)


def test_layer_targets_compare_compiled_with_compiled():
    rows = [
        {"device": "cuda", "mixer": m, "seconds": 60, "time_ms": t, "peak_mib": p}
        for m, t, p in (
            ("sdpa", 10, 100),
            ("wsm_w32", 8, 120),
            ("sm", 6, 90),
            ("sdpa_compiled", 10, 100),
            ("sm_compiled", 4, 90),
            ("wsm_w32_compiled", 6, 110),
        )  # fmt: skip
    ]
    got = {t["target"]: t["ok"] for t in layer_targets(rows, [32])}
    assert got["sm / sdpa time at 60 s, both compiled <= 0.5"] is True
    assert got["wsm_w32 / sdpa time at 60 s, both compiled <= 0.5"] is False
    assert got["wsm_w32 / sdpa peak memory at 60 s, both compiled <= 1.0"] is False
