"""Window sweeps: one recipe run per value, resumable, with a table and a plot.

A fake recipe stands in for training: its ``train.py`` parses the command
line itself, writes SpeechBrain-style error-rate files computed from the
swept value, ``train_cost.json`` and ``results.md``, fails for one value, and
records each run (its arguments and working folder) in a counter file.
"""

from __future__ import annotations

import importlib.util
import json
import os
import textwrap
from pathlib import Path

import pytest

from speechbrain_wsm.sweep import main, parse_sweep_args, parse_value, run_sweep

FAKE_TRAIN = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path

    hparams = sys.argv[1]
    assert Path(hparams).is_file(), hparams  # run from the recipe folder
    args = {}
    for token in sys.argv[2:]:
        if token.startswith("--") and "=" in token:
            key, value = token[2:].split("=", 1)
            args[key] = value
    with open(args["counter"], "a") as f:
        f.write(json.dumps({"argv": sys.argv[1:], "cwd": os.getcwd()}) + "\\n")
    window = int(args["window_size"])
    if window == int(args.get("fail_on", -1)):
        print("simulated crash", file=sys.stderr)
        sys.exit(3)
    out = Path(args["output_folder"])
    out.mkdir(parents=True, exist_ok=True)
    cer = 100.0 / window
    (out / "cer_test.txt").write_text(
        f"%WER {cer:.2f} [ 1 / 10, 0 ins, 0 del, 1 sub ]\\n")
    (out / "wer_test.txt").write_text(
        f"%WER {2 * cer:.2f} [ 1 / 10, 0 ins, 0 del, 1 sub ]\\n")
    (out / "train_cost.json").write_text(json.dumps(
        {"steps": 5, "step_seconds": window / 1000, "peak_memory_mb": 10.0 * window,
         "device": "cpu"}))
    (out / "results.md").write_text("# Results\\n")
    """
)


def fake_recipe(tmp_path: Path) -> Path:
    recipe = tmp_path / "recipe"
    (recipe / "hparams").mkdir(parents=True)
    (recipe / "train.py").write_text(FAKE_TRAIN)
    (recipe / "hparams" / "x.yaml").write_text(
        "seed: 1\noutput_folder: !ref results/<seed>\nwindow_size: 8\n"
        "enc: !new:torch.nn.Identity\n"
    )
    return recipe


def runs(counter: Path) -> list[dict]:
    if not counter.exists():
        return []
    return [json.loads(line) for line in counter.read_text().splitlines()]


def cer_column(sweep_md: Path) -> dict[str, float]:
    lines = [x for x in sweep_md.read_text().splitlines() if x.startswith("|")]
    heads = [h.strip() for h in lines[0].strip("|").split("|")]
    col = heads.index("test CER")
    return {
        cells[0]: float(cells[col])
        for cells in ([c.strip() for c in x.strip("|").split("|")] for x in lines[2:])
    }


def test_sweep_runs_each_value_resumes_and_reports_failures(
    tmp_path, monkeypatch, capsys
):
    recipe = fake_recipe(tmp_path)
    counter = tmp_path / "counter.txt"
    monkeypatch.chdir(tmp_path)
    argv = [
        str(recipe),
        "hparams/x.yaml",
        "--window_size=8,16,32,64",
        f"--counter={counter}",
        "--fail_on=32",
        "--device",
        "cpu",
    ]
    assert main(argv) != 0
    out = capsys.readouterr()
    assert "window_size=32" in out.err and "failed" in out.err
    assert "FAILED" in out.out

    sweep = tmp_path / "results" / "sweep" / "x_window_size"
    first = runs(counter)
    assert len(first) == 4
    for run, value in zip(first, (8, 16, 32, 64), strict=True):
        assert run["cwd"] == str(recipe.resolve())
        assert run["argv"][0] == "hparams/x.yaml"
        assert f"--window_size={value}" in run["argv"]
        assert f"--output_folder={sweep / f'window_size_{value}'}" in run["argv"]
        assert f"--counter={counter}" in run["argv"]
        assert run["argv"][-2:] == ["--device", "cpu"]
    assert sorted(p.name for p in (sweep / "logs").iterdir()) == [
        f"window_size_{v}.log" for v in (16, 32, 64, 8)
    ]

    # the table holds the finished values with the CER the recipe wrote
    assert cer_column(sweep / "sweep.md") == {"8": 12.5, "16": 6.25, "64": 1.56}
    data = json.loads((sweep / "sweep.json").read_text())
    assert [r["value"] for r in data["rows"]] == [8, 16, 64]
    assert data["rows"][0]["error_rates"]["test"] == {"CER": 12.5, "WER": 25.0}
    assert data["rows"][0]["peak_memory_mb"] == 80.0
    assert [f["value"] for f in data["failed"]] == [32]
    if importlib.util.find_spec("matplotlib") is not None:
        assert (sweep / "sweep_cer.png").stat().st_size > 0

    # a second call reruns only the value that did not finish
    assert main(argv[:4] + ["--fail_on=0"]) == 0
    second = runs(counter)[len(first) :]
    assert len(second) == 1 and "--window_size=32" in second[0]["argv"]
    assert capsys.readouterr().out.count("finished earlier") == 3
    assert cer_column(sweep / "sweep.md") == {
        "8": 12.5,
        "16": 6.25,
        "32": 3.12,
        "64": 1.56,
    }


def test_killed_run_starts_again_and_missing_cost_leaves_blanks(tmp_path):
    recipe = fake_recipe(tmp_path)
    counter = tmp_path / "counter.txt"
    sweep = tmp_path / "my sweep"
    (sweep / "window_size_4").mkdir(parents=True)  # killed: no results.md
    (sweep / "window_size_4" / "train_cost.json").write_text("{}")
    data = run_sweep(
        recipe,
        recipe / "hparams" / "x.yaml",
        "window_size",
        [4, 6],
        overrides={"counter": counter},
        sweep_folder=sweep,
    )
    assert len(runs(counter)) == 2
    os.remove(sweep / "window_size_6" / "train_cost.json")
    data = run_sweep(
        recipe,
        "hparams/x.yaml",
        "window_size",
        [4, 6],
        overrides={"counter": counter},
        sweep_folder=sweep,
    )
    assert len(runs(counter)) == 2
    assert data["rows"][1]["step_seconds"] is None
    last = (sweep / "sweep.md").read_text().strip().splitlines()[-1]
    assert last.replace(" ", "").endswith("|||")


def test_launcher_prefixes_the_command(tmp_path):
    recipe = fake_recipe(tmp_path)
    counter = tmp_path / "counter.txt"
    wrapper = tmp_path / "launch.py"
    wrapper.write_text(
        "import runpy, sys\nsys.argv = sys.argv[2:]\n"
        "runpy.run_path(sys.argv[0], run_name='__main__')\n"
    )
    import sys

    run_sweep(
        recipe,
        "hparams/x.yaml",
        "window_size",
        ["2"],
        sweep_folder=tmp_path / "s",
        run_opts=[f"--counter={counter}"],
        launcher=[sys.executable, str(wrapper), "--nproc_per_node=1"],
    )
    log = (tmp_path / "s" / "logs" / "window_size_2.log").read_text()
    assert f"{wrapper} --nproc_per_node=1 train.py hparams/x.yaml" in log
    assert len(runs(counter)) == 1


def test_command_line_errors(tmp_path, capsys):
    recipe = fake_recipe(tmp_path)
    two = [str(recipe), "hparams/x.yaml", "--window_size=8,16", "--seed=1,2"]
    assert main(two) == 2
    assert "exactly one option" in capsys.readouterr().err
    assert main([str(recipe), "hparams/x.yaml", "--seed=1"]) == 2
    assert "found 0" in capsys.readouterr().err
    with pytest.raises(ValueError, match="did you mean window_size"):
        run_sweep(recipe, "hparams/x.yaml", "windw_size", [8], sweep_folder=tmp_path)
    with pytest.raises(ValueError, match="output_folder"):
        run_sweep(
            recipe,
            "hparams/x.yaml",
            "window_size",
            [8],
            run_opts=["--output_folder=elsewhere"],
            sweep_folder=tmp_path,
        )
    with pytest.raises(ValueError, match="repeated"):
        run_sweep(recipe, "hparams/x.yaml", "window_size", [8, "8"])


def test_parse_values_and_options():
    args = parse_sweep_args(
        [
            "r",
            "hparams/x.yaml",
            "--lr=1e-4,3e-4",
            "--train_splits=[a, b]",
            "--sweep_folder",
            "out",
            "--launcher=torchrun --nproc_per_node=2",
        ]
    )
    assert args.key == "lr" and args.values == ["1e-4", "3e-4"]
    assert [parse_value(v) for v in args.values] == [1e-4, 3e-4]
    assert args.run_opts == ["--train_splits=[a, b]"]
    assert args.sweep_folder == "out"
    assert args.launcher == ["torchrun", "--nproc_per_node=2"]


def test_plot_axes(tmp_path):
    pytest.importorskip("matplotlib")
    from speechbrain_wsm.sweep import plot_sweep

    def data(values):
        return {
            "key": "k",
            "rows": [
                {"value": v, "label": str(v), "error_rates": {"t": {"CER": 1.0}}}
                for v in values
            ],
        }

    for values in ([8, 16, 32], [0.5, 3], ["sm", "wsm"]):
        path = tmp_path / f"{values[0]}.png"
        plot_sweep(data(values), path)
        assert path.stat().st_size > 0
