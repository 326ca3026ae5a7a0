"""The end-to-end demo's quick mode: every stage's outputs, learning, resuming."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from speechbrain_wsm.data.debian_corpus import missing_packages as real_missing
from speechbrain_wsm.data.synthetic import missing_packages as synth_missing

ROOT = Path(__file__).resolve().parents[2]
MISSING = sorted(set(real_missing()) | set(synth_missing()))


@pytest.mark.slow
@pytest.mark.skipif(bool(MISSING), reason=f"Debian packages missing: {MISSING}")
def test_demo_quick_mode_end_to_end(tmp_path):
    """``--quick --all``: every stage of the default and of ``--all``, tiny."""
    work = tmp_path / "demo"
    cmd = [
        sys.executable,
        "-m",
        "speechbrain_wsm.demo",
        "--quick",
        "--all",
        "--workdir",
        str(work),
    ]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1500)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    markers = {
        p.stem: json.loads(p.read_text()) for p in (work / ".stages").glob("*.json")
    }
    assert len(markers) == 15, sorted(markers)
    # the real test set is scored whole and by source
    for source in ("test-real-asterisk", "test-real-librivox"):
        rows = (work / "manifests" / f"{source}.csv").read_text().splitlines()
        assert len(rows) > 1, source
    for mixer in ("mhsa", "sm", "wsm"):
        assert (work / "pretrain" / mixer / "hyperparams.yaml").exists()
        for kind in ("wer", "cer"):
            for split in ("test-synth", "test-real", "test-real-librivox"):
                path = work / "scratch" / mixer / f"{kind}_{split}.txt"
                assert path.read_text().startswith("%WER"), path
                assert (work / "probe" / mixer / f"{kind}_{split}.txt").exists()
        # greedy and LM + lexicon decoding side by side
        assert (work / "scratch" / mixer / "wer_test-synth_lexicon.txt").exists()

    def runs_of(stage):  # a stage's facts: its runs, and "seconds"
        return {k: v for k, v in markers[stage].items() if isinstance(v, dict)}

    scratch = runs_of("from_scratch__mhsa__sm__wsm")
    steps = {run["cost"]["steps"] for run in scratch.values()}
    assert steps == {24}, scratch  # equal steps, exactly the quick run's
    assert not markers["steps_for_this_CPU"]["fitted"]  # --quick: not fitted
    runs = runs_of("low-resource__10min")
    assert set(runs) == {"wsm", "mhsa_top", "full", "hff_adapters", "scratch"}
    # HFF + adapters against full fine-tuning: equal steps, fewer trained parameters
    hff, full = runs["hff_adapters"]["cost"], runs["full"]["cost"]
    assert hff["steps"] == full["steps"], (hff, full)
    assert hff["trainable_parameters"] < full["trainable_parameters"], (hff, full)
    for run in runs.values():
        train = run["losses"]["train"]
        assert len(train) >= 2 and train[-1] < train[0], run  # it learns
        assert set(run["rates"]) >= {"test-synth", "test-real"}
    # LASER trained the pretrained MHSA encoder's top and exported it; the
    # probe of the export is scored like the probe before
    laser = runs_of("LASER__mhsa")["mhsa"]
    assert laser["cost"]["steps"] > 0 and laser["losses"]["train"], laser
    assert (work / "laser" / "mhsa" / "model" / "hyperparams.yaml").exists()
    after = runs_of("probe__mhsa_after_LASER")["mhsa_laser"]
    assert set(after["rates"]) >= {"test-synth", "test-real"}, after
    # the streaming recogniser: scored like the offline ones, its look-ahead measured
    llsa = runs_of("ablation_and_streaming")["llsa"]
    assert set(llsa["rates"]) >= {"test-synth", "test-real"}
    assert "frames" in llsa["lookahead"] and "ms" in llsa["lookahead"], llsa
    report = (work / "results.md").read_text()
    for text in ("## Minutes per stage", "## From scratch", "## Targets",
                 "## Claims, in miniature", "Second seed:", "WSM window sweep",
                 "10min", "with LM:", "test-synth WER, LM",
                 "A streaming recogniser", "## LASER before and after",
                 "| after LASER (4 updates) |", "| pretrained MHSA (before) |",
                 "## HFF + adapters against full fine-tuning", "| HFF + adapters |",
                 "| LASER improves content tasks", "| HFF with adapters approaches",
                 "| LASER: mhsa |", "| probe: mhsa after LASER |"):  # fmt: skip
        assert text in report, text
    assert (work / "loss_curves.png").stat().st_size > 10_000
    # the language model's text holds no dev or test sentence
    from speechbrain_wsm.data.lm import excluded_sentences, remove_sentences

    lm_text = (work / "lm" / "lm_text.txt").read_text().splitlines()
    held_out = excluded_sentences(
        [work / "manifests" / f"{n}.csv" for n in ("dev-synth", "test-synth")]
        + [work / "manifests" / "lm-exclude-test-real.csv"]
    )
    assert held_out and remove_sentences(lm_text, held_out)[1] == 0

    # A rerun skips every finished stage; a removed output is rebuilt alone.
    shutil.rmtree(work / "probe" / "sm")
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    lines = [ln for ln in again.stdout.splitlines() if ln.startswith("[")]
    assert sum("done earlier, skipped" in ln for ln in lines) == 14
    assert any(ln.startswith("[7/15] probe: mhsa, sm, wsm: done in") for ln in lines)


def test_reverberation_is_a_choice_with_its_own_stage(tmp_path):
    """``--reverb`` builds simulated rooms before training; the default does not."""
    from speechbrain_wsm import demo

    def stage_names(*flags):
        args = demo.parse_args(["--quick", "--workdir", str(tmp_path), *flags])
        return [s.name for s in demo.Demo(args).stages()]

    assert "room impulse responses" not in stage_names()
    with_rooms = stage_names("--reverb")
    rooms = with_rooms.index("room impulse responses")
    assert rooms < with_rooms.index("from scratch: mhsa, sm, wsm")


def test_the_steps_fit_the_budget_on_a_slow_cpu_and_never_exceed_the_default():
    """Runs side by side, timed side by side: the slowest one sets the pace."""
    from speechbrain_wsm.demo import MIN_STEPS, RECIPE_OVERHEAD, fit_step_count

    slow = {"mhsa": 1.6, "sm": 1.2, "wsm": 1.1}
    steps, per_step = fit_step_count(slow, 1500.0, 2155)
    assert per_step == pytest.approx(RECIPE_OVERHEAD * 1.6)
    assert steps == int(1500.0 / per_step) < 2155
    # a CPU twice as fast trains twice the steps, up to the default's
    assert fit_step_count({k: v / 2 for k, v in slow.items()}, 1500.0, 2155)[0] in (
        2 * steps,
        2 * steps + 1,
    )
    assert fit_step_count({k: v / 10 for k, v in slow.items()}, 1500.0, 2155)[0] == 2155
    # a budget spent elsewhere still leaves the plateau
    assert fit_step_count(slow, 10.0, 2155)[0] == MIN_STEPS


def test_all_fits_its_from_scratch_stages_to_what_its_other_stages_leave(
    tmp_path, monkeypatch
):
    """``--all`` (90 minutes) runs its stages of fixed size first; the fit then
    shares what they left among the three stages that train the fitted steps
    (both seeds, and the ablation beside the streaming recogniser)."""
    from speechbrain_wsm import demo

    def plan(*flags):
        args = demo.parse_args(["--workdir", str(tmp_path), *flags])
        return demo.Demo(args)

    d = plan("--all")
    assert d.args.minutes == 90.0 and plan().args.minutes == 30.0
    names = [s.name for s in d.stages()]
    fit = names.index(demo.FIT_STAGE)
    fitted = [s.name for s in d._fitted_stages()]
    assert names[fit + 1 :] == fitted and len(fitted) == 3
    assert {"pretrain: mhsa, sm, wsm", "low-resource: 10min"} <= set(names[:fit])

    spent = {s.name: 600.0 for s in d._fixed_size_stages()}  # 10 min each
    monkeypatch.setattr(
        demo, "stage_facts", lambda w, n: {"seconds": spent[n]} if n in spent else None
    )
    monkeypatch.setattr(
        demo, "side_by_side_step_seconds", lambda jobs: dict.fromkeys(jobs, 0.25)
    )
    monkeypatch.setattr(demo.Demo, "scratch_job", lambda self, *a, **k: {})
    facts = d.fit_steps()
    left = 60 * (90 - 3 * demo.DECODE_MINUTES) - 600.0 * len(spent)
    per_step = demo.RECIPE_OVERHEAD * 0.25
    assert facts["stages"] == 3
    assert facts["steps"] == int(left / 3 / per_step) < 2155
    # the default run: one fitted stage, nothing of fixed size before it
    facts = plan().fit_steps()
    assert facts["stages"] == 1 and facts["steps"] == 2155


def _tiny_job(tmp_path):
    from speechbrain_wsm import demo

    return {
        "hparams": demo.SCRATCH / "hparams" / "conformer_wsm.yaml",
        "overrides": {
            "data_folder": tmp_path,
            "d_model": 32,
            "num_layers": 1,
            "nhead": 2,
            "d_ffn": 64,
            "cnn_channels": [4, 4],
        },  # fmt: skip
        "run_opts": ["--device=cpu"],
    }


def test_step_seconds_times_the_recipes_own_model(tmp_path):
    """The model timed is the recipe YAML's, with the job's overrides."""
    import torch

    from speechbrain_wsm import demo

    threads = torch.get_num_threads()
    t = demo.step_seconds(_tiny_job(tmp_path), batch=2, seconds=1.0)
    assert 0.0 < t < 30.0
    assert torch.get_num_threads() == threads  # timed on one thread, then restored


def test_steps_are_timed_side_by_side_and_a_failing_one_stops_the_others(tmp_path):
    """The fit times every model while the others run (one process each, a
    barrier before the timed steps); a model that cannot be built aborts
    the barrier instead of leaving the others waiting."""
    import time

    from speechbrain_wsm import demo

    job = _tiny_job(tmp_path)
    times = demo.side_by_side_step_seconds({"a": job, "b": job})
    assert set(times) == {"a", "b"} and all(t > 0 for t in times.values())
    broken = {**job, "overrides": {**job["overrides"], "d_model": 33}}  # 33 % 2 heads
    start = time.monotonic()
    with pytest.raises(ValueError, match="33"):  # the cause, not a broken barrier
        demo.side_by_side_step_seconds({"good": job, "broken": broken})
    assert time.monotonic() - start < 120  # not the barrier's 600 s timeout


def test_both_front_ends_are_1d_and_as_wide_as_the_encoder(tmp_path, monkeypatch):
    """Both recognisers' front ends are 1-D convolutions whose channels are
    the latent's width (never a [16, 32] bottleneck)."""
    from speechbrain_wsm import demo

    d = demo.Demo(demo.parse_args(["--workdir", str(tmp_path)]))
    monkeypatch.setattr(demo, "batches_per_epoch", lambda *a: 10)
    monkeypatch.setattr(d, "_decoding", dict)
    stream = d.scratch_job("streaming_llsa", ["train-synth"], tmp_path / "s", 100)
    offline = d.scratch_job("wsm", ["train-synth"], tmp_path / "o", 100)
    assert stream["overrides"]["frontend_channels"] == [d.s["d_model"]] * 2
    assert "cnn_channels" not in stream["overrides"]
    assert offline["overrides"]["cnn_channels"] == [d.s["d_model"]] * 2
    assert offline["overrides"]["frontend_conv"] == "1d"
    assert "frontend_channels" not in offline["overrides"]
