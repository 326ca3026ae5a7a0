"""Word and character error rates with jiwer, in SpeechBrain's file format.

jiwer aligns each reference/hypothesis pair; the counts and alignments are
turned into SpeechBrain's per-utterance detail dicts so that SpeechBrain's own
printers write the file (the ``%WER`` summary line, ``%SER``, then every
utterance's alignment) exactly as SpeechBrain recipes do, and tools that read
those files keep working.

Every ASR result is written twice: ``wer_<split>.txt`` over words and
``cer_<split>.txt`` over characters, with spaces counted as the character
``_`` (what SpeechBrain's ``ErrorRateStats(split_tokens=True)`` scores; the
summary line of a CER file still reads ``%WER``, as SpeechBrain writes it).
CER moves long before WER when a model starts to learn, so it is the number
to watch on small data.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import jiwer
from speechbrain.dataio.wer import print_alignments, print_wer_summary
from speechbrain.utils.edit_distance import EDIT_SYMBOLS, wer_summary

__all__ = [
    "utterance_details",
    "score",
    "write_wer_file",
    "write_error_rate_files",
    "read_error_rates",
    "char_tokens",
    "results_table",
    "write_results_md",
]

_OPS = {"equal": "eq", "substitute": "sub", "insert": "ins", "delete": "del"}


def _alignment(ref: list[str], hyp: list[str]):
    """jiwer's word alignment as SpeechBrain's ``(op, ref_index, hyp_index)`` list."""
    if not ref:
        return [(EDIT_SYMBOLS["ins"], None, j) for j in range(len(hyp))]
    if not hyp:
        return [(EDIT_SYMBOLS["del"], i, None) for i in range(len(ref))]
    out = jiwer.process_words(" ".join(ref), " ".join(hyp))
    steps = []
    for chunk in out.alignments[0]:
        op = EDIT_SYMBOLS[_OPS[chunk.type]]
        refs = range(chunk.ref_start_idx, chunk.ref_end_idx)
        hyps = range(chunk.hyp_start_idx, chunk.hyp_end_idx)
        if chunk.type == "insert":
            steps += [(op, None, j) for j in hyps]
        elif chunk.type == "delete":
            steps += [(op, i, None) for i in refs]
        else:
            steps += [(op, i, j) for i, j in zip(refs, hyps, strict=True)]
    return steps


def utterance_details(uid: str, ref: str, hyp: str | None) -> dict:
    """SpeechBrain's per-utterance WER dict, counted by jiwer.

    A ``None`` hypothesis means the utterance was not decoded: it is reported
    as absent and not scored (SpeechBrain's ``[PARTIAL]`` summary).

    Example
    -------
    >>> d = utterance_details("u1", "THE CAT SAT", "THE BAT SAT DOWN")
    >>> d["substitutions"], d["insertions"], d["deletions"], round(d["WER"], 2)
    (1, 1, 0, 66.67)
    """
    ref_tokens = ref.split()
    if hyp is None:
        return {
            "key": uid, "scored": False, "hyp_absent": True, "hyp_empty": None,
            "num_edits": None, "num_ref_tokens": len(ref_tokens), "WER": None,
            "insertions": None, "deletions": None, "substitutions": None,
            "alignment": None, "ref_tokens": ref_tokens, "hyp_tokens": None,
        }  # fmt: skip
    hyp_tokens = hyp.split()
    alignment = _alignment(ref_tokens, hyp_tokens)
    count = {
        k: sum(op == EDIT_SYMBOLS[k] for op, _, _ in alignment)
        for k in ("ins", "del", "sub")
    }
    edits = sum(count.values())
    return {
        "key": uid,
        "scored": True,
        "hyp_absent": False,
        "hyp_empty": not hyp_tokens,
        "num_edits": edits,
        "num_ref_tokens": len(ref_tokens),
        "WER": 100.0 * edits / max(len(ref_tokens), 1)
        if ref_tokens
        else 100.0 * (edits > 0),
        "insertions": count["ins"],
        "deletions": count["del"],
        "substitutions": count["sub"],
        "alignment": alignment,
        "ref_tokens": ref_tokens,
        "hyp_tokens": hyp_tokens,
    }


def score(ids: Sequence[str], refs: Sequence[str], hyps: Sequence[str | None]):
    """Per-utterance details and the corpus summary (``WER``, ``SER``, counts).

    Example
    -------
    >>> details, summary = score(["a", "b"], ["ONE TWO", "THREE"], ["ONE TOO", "THREE"])
    >>> round(summary["WER"], 2), summary["num_scored_tokens"], summary["SER"]
    (33.33, 3, 50.0)
    """
    if not (len(ids) == len(refs) == len(hyps)):
        raise ValueError(
            f"ids, refs and hyps differ in length: {len(ids)}, {len(refs)}, {len(hyps)}"
        )
    details = [
        utterance_details(u, r, h) for u, r, h in zip(ids, refs, hyps, strict=True)
    ]
    return details, wer_summary(details)


def write_wer_file(path: str, ids, refs, hyps) -> dict:
    """Score and write ``path`` in SpeechBrain's format; returns the summary."""
    details, summary = score(ids, refs, hyps)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        print_wer_summary(summary, f)
        print_alignments(details, f)
    return summary


def char_tokens(text: str) -> str:
    """Characters of ``text`` as space-separated tokens, word gaps as ``_``.

    Example
    -------
    >>> char_tokens("THE  CAT")
    'T H E _ C A T'
    """
    return " ".join("_".join(text.split()))


def write_error_rate_files(
    folder: str, name: str, ids, refs, hyps
) -> dict[str, float | dict]:
    """Write ``wer_<name>.txt`` and ``cer_<name>.txt`` in ``folder``.

    Returns
    -------
    dict
        The WER summary (SpeechBrain's keys: ``WER``, ``num_edits`` ...) with
        ``CER`` (the character error rate) and ``cer_summary`` added.

    Example
    -------
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> s = write_error_rate_files(d, "x", ["a"], ["THE CAT"], ["THE BAT"])
    >>> round(s["WER"], 2), round(s["CER"], 2), sorted(os.listdir(d))
    (50.0, 14.29, ['cer_x.txt', 'wer_x.txt'])
    """
    summary = write_wer_file(os.path.join(folder, f"wer_{name}.txt"), ids, refs, hyps)
    cer = write_wer_file(
        os.path.join(folder, f"cer_{name}.txt"),
        ids,
        [char_tokens(r) for r in refs],
        [None if h is None else char_tokens(h) for h in hyps],
    )
    return {**summary, "CER": cer["WER"], "cer_summary": cer}


def read_error_rates(folder: str) -> dict[str, dict[str, float]]:
    """``{split: {"WER": x, "CER": y}}`` from the ``wer_*``/``cer_*`` files of a run.

    Each file's first line (SpeechBrain's ``%WER x [ ... ]`` summary) is read;
    a split with only one of the two files has only that key.

    Example
    -------
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> _ = write_error_rate_files(d, "test", ["a"], ["AB CD"], ["AB CE"])
    >>> read_error_rates(d)
    {'test': {'CER': 20.0, 'WER': 50.0}}
    """
    rates: dict[str, dict[str, float]] = {}
    for path in sorted(Path(folder).glob("[cw]er_*.txt")):
        first = path.read_text(encoding="utf-8").split("\n", 1)[0].split()
        if len(first) > 1 and first[0] == "%WER":
            kind = path.stem[:3].upper()
            rates.setdefault(path.stem[4:], {})[kind] = float(first[1])
    return rates


def results_table(results: Mapping[str, Mapping], columns: Sequence[str] = ()) -> str:
    """Markdown table of ``{row name: {split: summary or number}}``.

    A cell holding a summary with a ``CER`` (what
    :func:`write_error_rate_files` returns, or ``{"WER": .., "CER": ..}``)
    becomes two columns, ``<split> CER`` and ``<split> WER``; a summary
    without one gives its ``WER``; other values are printed as they are
    (floats with two decimals).

    Example
    -------
    >>> print(results_table({"wsm": {"test-clean": {"WER": 5.123, "CER": 2.0}, "params": 10}}))
    | model | test-clean CER | test-clean WER | params |
    |---|---|---|---|
    | wsm | 2.00 | 5.12 | 10 |
    """
    columns = list(columns) or list(
        dict.fromkeys(k for row in results.values() for k in row)
    )
    with_cer = {
        c
        for c in columns
        if any(
            isinstance(r.get(c), Mapping) and "CER" in r[c] for r in results.values()
        )
    }
    heads = [
        h
        for c in columns
        for h in ((f"{c} CER", f"{c} WER") if c in with_cer else (c,))
    ]
    lines = [
        "| model | " + " | ".join(heads) + " |",
        "|" + "---|" * (len(heads) + 1),
    ]

    def fmt(v):
        return f"{v:.2f}" if isinstance(v, float) else str(v)

    for name, row in results.items():
        cells = []
        for c in columns:
            v = row.get(c, "")
            if c in with_cer:
                v = v if isinstance(v, Mapping) else {}
                cells += [fmt(v.get("CER", "")), fmt(v.get("WER", ""))]
                continue
            if isinstance(v, Mapping):
                v = v.get("WER")
            cells.append(fmt(v))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_results_md(
    path: str, results: Mapping[str, Mapping], title: str = "Results", note: str = ""
) -> str:
    """Write :func:`results_table` under a title (and a note) to ``path``."""
    text = f"# {title}\n\n{results_table(results)}\n" + (f"\n{note}\n" if note else "")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return text
