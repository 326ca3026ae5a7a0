"""The adaptation-methods benchmark: a quick run's table, parameter ordering, target checks."""

import json

import pytest

from speechbrain_wsm.bench import adaptation, common


@pytest.fixture
def in_process(monkeypatch):
    """Measure in this process: the table's logic is under test, not the
    fork-server machinery of :mod:`speechbrain_wsm.bench.common` (tested
    with the other benchmarks), whose start-up would dominate a tiny run."""
    monkeypatch.setattr(adaptation, "in_child", lambda fn, *args: fn(*args))
    monkeypatch.setattr(common, "timings", common.time_interleaved)
    monkeypatch.setattr(common, "release_freed_memory", lambda: None)
    monkeypatch.setattr(
        common,
        "peak_memory",
        lambda make, device, include_model: common._peak_here(
            make, device, include_model
        ),
    )


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_parameter_counts_order_the_methods(in_process):
    counts = adaptation.parameter_counts(adaptation.TINY, 2, 4)
    assert list(counts) == list(adaptation.METHODS)
    enc = {m: r["encoder_trainable"] for m, r in counts.items()}
    # What each method trains inside the encoder: everything (but the front
    # end) > new blocks > adapters > nothing.
    assert enc["full"] > enc["wsm"] > enc["sm"] > enc["adapters"] > 0
    assert enc["full"] > enc["mhsa_top"] > 0
    assert enc["hff_adapters"] == enc["adapters"]
    assert enc["hff"] == enc["weighted_sum"] == 0
    assert len({r["encoder_params"] for r in counts.values()}) == 1
    for r in counts.values():
        assert r["trainable_params"] > r["encoder_trainable"] or r is counts["full"]
        assert r["encoder_trainable_pct"] == pytest.approx(
            100 * r["encoder_trainable"] / r["encoder_params"], abs=1e-3
        )


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_quick_run_prints_the_table_in_method_order(tmp_path, capsys, in_process):
    methods = ["hff", "full", "hff_adapters", "wsm"]
    argv = ["--quick", "--device", "cpu", "--lengths", "1", "--out", str(tmp_path)]
    assert adaptation.main([*argv, "--methods", *methods]) == 0
    data = json.loads((tmp_path / "adaptation_cpu.json").read_text())
    rows = data["rows"]
    assert [r["method"] for r in rows] == ["full", "wsm", "hff_adapters", "hff"]
    # (in one process the peak-RSS mark is not a per-step peak: only present)
    assert all(not r["error"] and r["time_ms"] > 0 and r["peak_mib"] >= 0 for r in rows)
    table = capsys.readouterr().out
    labels = [
        line.split("|")[1].strip()
        for line in table.splitlines()
        if line.startswith("| ")
    ]
    assert [x for x in labels if x in adaptation.LABELS.values()] == [
        "full fine-tuning", "selective WSM", "HFF + adapters*", "HFF*"
    ]  # fmt: skip
    assert "reconstruction" in table and "not trained here" in table
    targets = data["meta"]["targets"]
    assert len(targets) == 4 and all(t["ok"] is None for t in targets)  # quick: info


def _rows(full_ms, hff_ms, hffa_ms, full_mib, hff_mib, pct):
    base = {"device": "cpu", "seconds": 16}
    return [
        {**base, "method": "full", "time_ms": full_ms, "peak_mib": full_mib},
        {**base, "method": "hff", "time_ms": hff_ms, "peak_mib": hff_mib},
        {**base, "method": "hff_adapters", "time_ms": hffa_ms, "peak_mib": 1.0,
         "encoder_trainable_pct": pct},
    ]  # fmt: skip


def test_targets_are_judged_on_cpu():
    met = adaptation.check_targets(_rows(100.0, 40.0, 60.0, 1000.0, 300.0, 1.3))
    assert [t["ok"] for t in met] == [True, True, True, True]
    missed = adaptation.check_targets(_rows(100.0, 60.0, 70.0, 1000.0, 500.0, 4.0))
    assert [t["ok"] for t in missed] == [False, False, False, False]
    info = adaptation.check_targets(_rows(100.0, 60.0, 70.0, 1000.0, 500.0, 4.0), False)
    assert all(t["ok"] is None and t["measured"] is not None for t in info)


def test_runs_fill_the_error_rate_column(tmp_path):
    run = tmp_path / "hff_run"
    run.mkdir()
    for kind, rate in (("wer", 25.0), ("cer", 10.0)):
        (run / f"{kind}_dev-clean.txt").write_text(
            f"%WER {rate:.2f} [ 1 / 4, 0 ins, 0 del, 1 sub ]\n"
        )
    assert adaptation.read_runs([f"hff={run}"]) == {"hff": ("dev-clean", 10.0, 25.0)}
    assert adaptation.read_runs([f"hff={run}"], "dev-clean")["hff"][1] == 10.0
    with pytest.raises(SystemExit, match="test-other"):
        adaptation.read_runs([f"hff={run}"], "test-other")
    with pytest.raises(SystemExit, match="method=folder"):
        adaptation.read_runs(["nope=x"])
