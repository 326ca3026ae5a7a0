"""Sweep one hyperparameter of a recipe, as users run it, and tabulate the runs.

::

    python -m speechbrain_wsm.sweep recipes/LibriSpeech/ASR/CTC hparams/wsm.yaml \\
        --window_size=8,16,32,64 --data_folder=/data/LibriSpeech --device=cuda:0 \\
        [--sweep_folder DIR] [--launcher "torchrun --nproc_per_node=2"]

Exactly one ``--key=v1,v2,...`` holds a comma-separated list: that top-level
YAML key is swept. The recipe's ``train.py`` then runs once per value, from the
recipe folder, with ``--<key>=<value> --output_folder=<sweep_folder>/<key>_<value>``
and every other option passed on exactly as given (overrides such as
``--lr=1e-4`` and SpeechBrain run options such as ``--device cpu`` alike; relative
paths in them are therefore read from the recipe folder, as in a manual run).

A run whose output folder holds ``results.md`` is finished and skipped, so a
sweep that was stopped is resumed by running the same command again (an
unfinished run starts again and resumes from its own checkpoints). A failing
run is reported and the sweep goes on; the exit code is non-zero at the end.

The sweep writes, in ``<sweep_folder>`` (default
``results/sweep/<yaml stem>_<key>`` under the current directory):

- ``logs/<key>_<value>.log``: one log per run;
- ``sweep.md``: a table with a row per finished value (CER and WER of every
  split the run scored, step time and peak memory from ``train_cost.json``);
- ``sweep.json``: the same data, plus the failed runs;
- ``sweep_cer.png``: CER against the swept value, a line per split (needs
  matplotlib).
"""

from __future__ import annotations

import difflib
import json
import math
import re
import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from speechbrain_wsm.errors import UserFileNotFoundError, UserValueError
from speechbrain_wsm.pipeline import StageFailed, run_recipe
from speechbrain_wsm.scoring import read_error_rates

__all__ = [
    "SweepArgs",
    "parse_sweep_args",
    "parse_value",
    "run_sweep",
    "sweep_table",
    "plot_sweep",
    "main",
]

USAGE = (
    "usage: python -m speechbrain_wsm.sweep <recipe folder> hparams/<x>.yaml "
    "--<key>=<v1>,<v2>,... [--<other key>=<value> ...] [--sweep_folder DIR] "
    '[--launcher "torchrun --nproc_per_node=2"]'
)

_OWN_OPTIONS = ("--sweep_folder", "--launcher")


def parse_value(text: str) -> object:
    """One swept value as the recipe's YAML loader reads it (a YAML scalar).

    Arguments
    ---------
    text : str
        The value as typed on the command line.

    Returns
    -------
    int, float, bool or str
        Anything that is not a YAML scalar stays the string it was.

    Example
    -------
    >>> parse_value("16"), parse_value("1e-4"), parse_value("wsm"), parse_value("true")
    (16, 0.0001, 'wsm', True)
    """
    from ruamel.yaml import YAML

    try:
        value = YAML(typ="safe", pure=True).load(text)
    except Exception:  # not valid YAML on its own: keep the text
        return text
    if value is None or isinstance(value, (list, dict)):
        return text
    return value


class SweepArgs:
    """What :func:`parse_sweep_args` makes of a command line.

    Attributes
    ----------
    recipe_dir, hparams : str
        The two positional arguments.
    key : str
        The swept key.
    values : list of str
        The swept values, as typed.
    run_opts : list of str
        Every other option, as given, in order.
    sweep_folder : str or None
    launcher : list of str
    """

    def __init__(
        self,
        recipe_dir: str,
        hparams: str,
        key: str,
        values: list[str],
        run_opts: list[str],
        sweep_folder: str | None,
        launcher: list[str],
    ) -> None:
        self.recipe_dir = recipe_dir
        self.hparams = hparams
        self.key = key
        self.values = values
        self.run_opts = run_opts
        self.sweep_folder = sweep_folder
        self.launcher = launcher


def _is_list(value: str) -> bool:
    """A comma-separated list, not a YAML flow list or mapping."""
    return "," in value and not value.lstrip().startswith(("[", "{"))


def parse_sweep_args(argv: Sequence[str]) -> SweepArgs:
    """Split a sweep command line into the swept key, its values and the rest.

    Arguments
    ---------
    argv : sequence of str
        The arguments after ``python -m speechbrain_wsm.sweep``.

    Returns
    -------
    SweepArgs

    Raises
    ------
    ValueError
        Without the two positional arguments, with no comma-separated list or
        more than one, or with an empty value in the list.

    Example
    -------
    >>> a = parse_sweep_args(["rec", "hparams/x.yaml", "--window_size=8,16",
    ...                       "--lr=1e-4", "--device", "cpu", "--launcher", "torchrun --nproc_per_node=2"])
    >>> a.key, a.values, a.run_opts, a.launcher
    ('window_size', ['8', '16'], ['--lr=1e-4', '--device', 'cpu'], ['torchrun', '--nproc_per_node=2'])
    """
    argv = list(argv)
    if len(argv) < 2 or argv[0].startswith("-") or argv[1].startswith("-"):
        raise UserValueError(
            "the recipe folder and its hparams YAML come first\n" + USAGE
        )
    recipe_dir, hparams, rest = argv[0], argv[1], argv[2:]
    own: dict[str, str] = {}
    passed: list[str] = []
    i = 0
    while i < len(rest):
        token = rest[i]
        name = token.split("=", 1)[0]
        if name in _OWN_OPTIONS:
            if "=" in token:
                own[name] = token.split("=", 1)[1]
            elif i + 1 < len(rest):
                own[name] = rest[i + 1]
                i += 1
            else:
                raise UserValueError(f"{name} needs a value\n{USAGE}")
        else:
            passed.append(token)
        i += 1
    swept = [
        j
        for j, token in enumerate(passed)
        if token.startswith("--") and "=" in token and _is_list(token.split("=", 1)[1])
    ]
    if len(swept) != 1:
        found = ", ".join(passed[j] for j in swept)
        raise UserValueError(
            "exactly one option must hold a comma-separated list of values "
            f"(e.g. --window_size=8,16,32); found {len(swept)}"
            + (f": {found}" if found else "")
            + f"\n{USAGE}"
        )
    key, text = passed[swept[0]][2:].split("=", 1)
    values = [v.strip() for v in text.split(",")]
    if not key or any(not v for v in values):
        raise UserValueError(f"empty key or value in {passed[swept[0]]!r}")
    return SweepArgs(
        recipe_dir=recipe_dir,
        hparams=hparams,
        key=key,
        values=values,
        run_opts=[t for j, t in enumerate(passed) if j != swept[0]],
        sweep_folder=own.get("--sweep_folder"),
        launcher=shlex.split(own.get("--launcher", "")),
    )


def _top_level_keys(yaml_path: Path) -> list[str]:
    """Keys at column 0 of a (Hyper)YAML file, read without resolving its tags."""
    pattern = re.compile(r"^([A-Za-z_][\w.-]*)\s*:")
    return [
        m.group(1)
        for line in yaml_path.read_text(encoding="utf-8").splitlines()
        if (m := pattern.match(line))
    ]


def _label(value: object) -> str:
    """A value as it goes on the command line and into folder names."""
    return str(value).strip()


def _folder_name(key: str, value: object) -> str:
    return re.sub(r"[^A-Za-z0-9_.+=-]", "_", f"{key}_{_label(value)}")


def _numeric(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _resolve(recipe_dir: str | Path, hparams: str | Path) -> tuple[Path, Path]:
    recipe = Path(recipe_dir).resolve()
    script = recipe / "train.py"
    if not script.is_file():
        raise UserFileNotFoundError(f"no train.py in the recipe folder {recipe}")
    hp = Path(hparams)
    if not hp.is_absolute():
        hp = recipe / hp if (recipe / hp).exists() else hp.resolve()
    hp = hp.resolve()
    if not hp.is_file():
        raise UserFileNotFoundError(
            f"hparams file {hparams} not found (looked in {recipe} and in the "
            "current directory)"
        )
    if not hp.is_relative_to(recipe):
        raise UserValueError(
            f"hparams file {hp} is not inside the recipe folder {recipe}"
        )
    return script, hp


def _train_cost(folder: Path) -> dict:
    path = folder / "train_cost.json"
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, OSError) as err:
        print(f"warning: cannot read {path}: {err}", file=sys.stderr)
        return {}


def run_sweep(
    recipe_dir: str | Path,
    hparams: str | Path,
    key: str,
    values: Sequence[object],
    overrides: Mapping[str, object] | None = None,
    sweep_folder: str | Path | None = None,
    run_opts: Sequence[str] = (),
    launcher: Sequence[str] = (),
) -> dict:
    """Run a recipe once per value of ``key``, then write the sweep's table and plot.

    Arguments
    ---------
    recipe_dir : path
        The recipe folder (holds ``train.py``); runs start there.
    hparams : path
        The YAML file, relative to ``recipe_dir`` (or to the current
        directory, or absolute); it must lie inside ``recipe_dir``.
    key : str
        A top-level key of the YAML.
    values : sequence
        The values to run. Strings are passed as typed (``"1e-4"``) and read
        as YAML scalars for the plot; other objects are passed as ``str(v)``.
    overrides : mapping, optional
        Further ``--key=value`` overrides for every run.
    sweep_folder : path, optional
        Where runs and tables go; default ``results/sweep/<yaml stem>_<key>``
        under the current directory.
    run_opts : sequence of str
        Further arguments for every run, passed as given (``--device=cpu``).
    launcher : sequence of str
        Command that starts ``train.py`` in place of the current Python
        (e.g. ``["torchrun", "--nproc_per_node=2"]``).

    Returns
    -------
    dict
        ``key``, ``hparams``, ``sweep_folder``, ``rows`` (one per finished
        value: ``value``, ``label``, ``output_folder``, ``error_rates``
        ``{split: {"CER", "WER"}}``, ``steps``, ``step_seconds``,
        ``peak_memory_mb``, ``device``) and ``failed`` (one per failed value:
        ``value``, ``label``, ``log``, ``error``). A failed run does not
        raise: callers check ``failed``.

    Raises
    ------
    ValueError
        For an empty or repeated value list, a key the YAML does not define
        at top level, or an ``output_folder`` (the sweep sets it) or the swept
        key among the other options.
    """
    overrides = dict(overrides or {})
    run_opts = list(run_opts)
    script, hp = _resolve(recipe_dir, hparams)
    if not values:
        raise UserValueError(f"no values to sweep for {key!r}")
    labels = [_label(v) for v in values]
    repeated = sorted({x for x in labels if labels.count(x) > 1})
    if repeated:
        raise UserValueError(f"values repeated in the sweep of {key!r}: {repeated}")
    folders = [_folder_name(key, v) for v in values]
    if len(set(folders)) != len(folders):
        raise UserValueError(f"values {labels} give clashing folder names {folders}")
    known = _top_level_keys(hp)
    if key not in known:
        close = difflib.get_close_matches(key, known, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UserValueError(f"{hp.name} has no top-level key {key!r}{hint}")
    given = set(overrides) | {
        t[2:].split("=", 1)[0] for t in run_opts if t.startswith("--")
    }
    for clash in ("output_folder", key):
        if clash in given:
            raise UserValueError(
                f"--{clash} is set by the sweep for each run; do not pass it"
                + (" (use --sweep_folder)" if clash == "output_folder" else "")
            )

    folder = Path(
        sweep_folder
        if sweep_folder is not None
        else Path("results") / "sweep" / f"{hp.stem}_{key}"
    ).resolve()
    (folder / "logs").mkdir(parents=True, exist_ok=True)

    rows: list[dict] = []
    failed: list[dict] = []
    for i, (value, label, name) in enumerate(zip(values, labels, folders), 1):
        head = f"[{i}/{len(values)}] {key}={label}"
        out = folder / name
        log = folder / "logs" / f"{name}.log"
        parsed = parse_value(value) if isinstance(value, str) else value
        if (out / "results.md").exists():
            print(
                f"{head}: finished earlier ({out / 'results.md'}), skipped", flush=True
            )
        else:
            print(f"{head}: running, log {log}", flush=True)
            try:
                run_recipe(
                    script,
                    hp,
                    {key: label, **overrides, "output_folder": out},
                    log,
                    run_opts,
                    launcher=launcher,
                )
            except (StageFailed, OSError) as err:
                lines = str(err).splitlines() or [repr(err)]
                code = re.search(r"failed \(exit (-?\d+)\)", lines[0])
                error = f"exit code {code.group(1)}" if code else lines[0]
                print(f"{head}: FAILED: {lines[0]}", flush=True)
                for line in lines[1:][-10:]:
                    print(f"    {line}", flush=True)
            else:
                error = None
                if not (out / "results.md").exists():
                    error = f"the run ended without {out / 'results.md'}"
                    print(f"{head}: FAILED: {error}", flush=True)
            if error is not None:
                failed.append(
                    {"value": parsed, "label": label, "log": str(log), "error": error}
                )
                continue
            print(f"{head}: done", flush=True)
        cost = _train_cost(out)
        rows.append(
            {
                "value": parsed,
                "label": label,
                "output_folder": str(out),
                "error_rates": read_error_rates(str(out)),
                "steps": cost.get("steps"),
                "step_seconds": cost.get("step_seconds"),
                "peak_memory_mb": cost.get("peak_memory_mb"),
                "device": cost.get("device"),
            }
        )

    data = {
        "key": key,
        "hparams": str(hp),
        "sweep_folder": str(folder),
        "rows": rows,
        "failed": failed,
    }
    table = sweep_table(data)
    (folder / "sweep.md").write_text(
        f"# Sweep of {key} ({hp.name})\n\n{table}\n", encoding="utf-8"
    )
    (folder / "sweep.json").write_text(json.dumps(data, indent=1), encoding="utf-8")
    try:
        plot_sweep(data, folder / "sweep_cer.png")
    except ImportError:
        print("matplotlib is not installed: no sweep_cer.png", flush=True)
    return data


def _splits(rows: Sequence[Mapping]) -> list[str]:
    return list(dict.fromkeys(s for r in rows for s in r["error_rates"]))


def sweep_table(data: Mapping) -> str:
    """The markdown table of :func:`run_sweep`'s data: a row per finished value.

    Example
    -------
    >>> row = {"label": "8", "error_rates": {"test": {"CER": 3.0, "WER": 9.5}},
    ...        "step_seconds": 0.1234, "peak_memory_mb": None, "device": "cpu"}
    >>> print(sweep_table({"key": "window_size", "rows": [row]}))
    | window_size | test CER | test WER | step time (s) | peak memory (MB) | device |
    |---|---|---|---|---|---|
    | 8 | 3.00 | 9.50 | 0.123 | | cpu |
    """
    rows = data["rows"]
    splits = _splits(rows)
    heads = [data["key"]]
    heads += [f"{s} {m}" for s in splits for m in ("CER", "WER")]
    heads += ["step time (s)", "peak memory (MB)", "device"]

    def cell(v, fmt):
        return "" if v is None else fmt.format(v)

    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for r in rows:
        cells = [r["label"]]
        for s in splits:
            rates = r["error_rates"].get(s, {})
            cells += [cell(rates.get(m), "{:.2f}") for m in ("CER", "WER")]
        cells += [
            cell(r.get("step_seconds"), "{:.3f}"),
            cell(r.get("peak_memory_mb"), "{:.0f}"),
            cell(r.get("device"), "{}"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_sweep(data: Mapping, path: str | Path) -> None:
    """CER against the swept value, one line per split, saved to ``path``.

    Numeric values go on a log2 axis when all are powers of two, else on a
    linear one; other values are categories in the order run. Raises
    ImportError without matplotlib.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(data["rows"])
    numbers = [_numeric(r["value"]) for r in rows]
    numeric = bool(rows) and all(x is not None for x in numbers)
    if numeric:
        order = sorted(range(len(rows)), key=lambda j: numbers[j])
        rows = [rows[j] for j in order]
        xs = [numbers[j] for j in order]
    else:
        xs = list(range(len(rows)))
    fig, ax = plt.subplots(figsize=(6, 4))
    for split in _splits(rows):
        ys = [r["error_rates"].get(split, {}).get("CER", math.nan) for r in rows]
        ax.plot(xs, ys, marker="o", label=split)
    if numeric and all(x > 0 and math.log2(x).is_integer() for x in xs):
        ax.set_xscale("log", base=2)
    if rows and (not numeric or ax.get_xscale() == "log"):
        ax.set_xticks(xs)
        ax.set_xticklabels([r["label"] for r in rows])
        ax.minorticks_off()
    ax.set_xlabel(data["key"])
    ax.set_ylabel("CER (%)")
    ax.set_title(f"CER against {data['key']}")
    ax.grid(alpha=0.3)
    if rows and _splits(rows):
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns 0 when every run finished, else 1.

    A usage error returns 2 with the message on stderr.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE + "\n\n" + (__doc__ or ""))
        return 0 if argv else 2
    try:
        args = parse_sweep_args(argv)
        data = run_sweep(
            args.recipe_dir,
            args.hparams,
            args.key,
            args.values,
            sweep_folder=args.sweep_folder,
            run_opts=args.run_opts,
            launcher=args.launcher,
        )
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print()
    print(sweep_table(data))
    print(f"\ntable: {Path(data['sweep_folder']) / 'sweep.md'}")
    if data["failed"]:
        print(
            f"\n{len(data['failed'])} of {len(data['rows']) + len(data['failed'])} "
            "runs failed:",
            file=sys.stderr,
        )
        for f in data["failed"]:
            print(
                f"  {data['key']}={f['label']}: {f['error']} (log {f['log']})",
                file=sys.stderr,
            )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
