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
    work = tmp_path / "demo"
    cmd = [
        sys.executable,
        "-m",
        "speechbrain_wsm.demo",
        "--quick",
        "--workdir",
        str(work),
    ]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1500)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    markers = {
        p.stem: json.loads(p.read_text()) for p in (work / ".stages").glob("*.json")
    }
    assert len(markers) == 11, sorted(markers)
    for mixer in ("mhsa", "sm", "wsm"):
        assert (work / "pretrain" / mixer / "hyperparams.yaml").exists()
        for stage in ("probe", "scratch"):
            for kind in ("wer", "cer"):
                for split in ("test-synth", "test-real"):
                    path = work / stage / mixer / f"{kind}_{split}.txt"
                    assert path.read_text().startswith("%WER"), path

    def runs_of(stage):  # a stage's facts: its runs, and "seconds"
        return {k: v for k, v in markers[stage].items() if isinstance(v, dict)}

    scratch = runs_of("from_scratch__mhsa__sm__wsm")
    steps = {run["cost"]["steps"] for run in scratch.values()}
    assert len(steps) == 1, scratch  # equal steps
    for fold in ("10min", "1h"):
        runs = runs_of(f"low-resource__{fold}")
        assert set(runs) == {"wsm", "mhsa_top", "full", "scratch"}
        for run in runs.values():
            train = run["losses"]["train"]
            assert len(train) >= 2 and train[-1] < train[0], run  # it learns
            assert set(run["rates"]) >= {"test-synth", "test-real"}
    report = (work / "results.md").read_text()
    for text in ("## From scratch", "| 1h | WSM top-2 selective |", "## Targets",
                 "test-synth CER", "## WSM window sweep", "hypothesis:"):  # fmt: skip
        assert text in report, text
    assert (work / "sweep" / "sweep.md").exists()
    for png in ("loss_curves.png", "layers_cpu.png"):
        assert (work / png).stat().st_size > 10_000

    # A rerun skips every finished stage; a removed output is rebuilt alone.
    shutil.rmtree(work / "probe" / "sm")
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    lines = [ln for ln in again.stdout.splitlines() if ln.startswith("[")]
    assert sum("done earlier, skipped" in ln for ln in lines) == 10
    assert any(ln.startswith("[7/11] probe: mhsa, sm, wsm: done in") for ln in lines)
