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
    assert len(markers) == 17, sorted(markers)
    for mixer in ("mhsa", "sm", "wsm"):
        assert (work / "pretrain" / mixer / "hyperparams.yaml").exists()
        probe = work / "probe" / mixer
        assert (probe / "wer_test-synth.txt").read_text().startswith("%WER")
        assert (probe / "wer_test-real.txt").read_text().startswith("%WER")
    finetunes = [m for name, m in markers.items() if name.startswith("finetune")]
    assert len(finetunes) == 6
    for info in finetunes:
        train = info["losses"]["train"]
        assert len(train) >= 2 and train[-1] < train[0], info  # fine-tuning learns
        assert set(info["wer"]) >= {"test-synth", "test-real"}
    report = (work / "results.md").read_text()
    assert "Selective fine-tuning" in report and "| wsm | 1h |" in report
    for png in ("loss_curves.png", "layers_cpu.png"):
        assert (work / png).stat().st_size > 10_000

    # A rerun skips every finished stage; a removed output is rebuilt alone.
    shutil.rmtree(work / "probe" / "sm")
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    lines = [ln for ln in again.stdout.splitlines() if ln.startswith("[")]
    assert sum("done earlier, skipped" in ln for ln in lines) == 16
    assert any(ln.startswith("[9/17] probe: sm: done in") for ln in lines)
