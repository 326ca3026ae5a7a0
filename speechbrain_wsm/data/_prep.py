"""Preparation bookkeeping shared by every dataset preparation in ``data/``.

LibriSpeech, Libri-light and every MP3S preparation follow the same rules:

- bad input is skipped, never fatal: each skipped item is recorded as
  ``(kind, ID, path, detail)`` (:class:`SkippedInput`), counted by kind and
  listed in one report file beside the manifests (:func:`write_report`);
- outputs are durable (:func:`write_outputs`): the report, then one
  ``<name>.json`` summary per manifest (the options used, utterances, hours,
  skipped counts), then the ``<name>.csv`` manifests, each written to a
  temporary file and renamed into place, so a finished manifest always has its
  summary beside it; one log line sums the preparation up (a warning when
  something was skipped);
- a later call keeps finished manifests made with the same options
  (:func:`is_finished`); the corpus builders check their summary files the
  same way (:func:`read_summary`, :func:`same_options`);
- every ``prepare_*`` function takes the same common options
  (:class:`PrepOptions`: expected sample rate, audio check, threads, progress
  bars, ``skip_prep``, ``redo``) as keyword arguments beside its own.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields

from ._probe import probe_files
from .manifests import atomic_write_text, write_manifest

__all__ = [
    "KeywordOptions",
    "Outputs",
    "PrepOptions",
    "Prepared",
    "SkippedInput",
    "is_finished",
    "read_summary",
    "same_options",
    "split_list",
    "write_outputs",
    "write_report",
]

logger = logging.getLogger(__name__)


@dataclass
class SkippedInput:
    """Input a preparation left out: ``(kind, ID, path, detail)`` per item."""

    skipped: list[tuple[str, str, str, str]] = field(default_factory=list)

    def skip(self, kind: str, uid: str, path: str, detail: str) -> None:
        """Record one skipped item."""
        self.skipped.append((kind, str(uid), str(path), detail))

    def counts(self) -> Counter:
        """Skipped items per kind."""
        return Counter(kind for kind, *_ in self.skipped)


@dataclass
class Prepared(SkippedInput):
    """A preparation's manifests (rows: dicts with a ``duration`` in seconds).

    ``manifests`` maps each manifest name to its rows, ``rows`` holds every
    row (the hours of the log line), ``skipped`` the skipped input and
    ``summary`` more fields for every manifest's ``.json`` summary.

    Example
    -------
    >>> p = Prepared.of(["train", "test"])
    >>> p.add("train", {"ID": "a", "duration": "1800.0"})
    >>> p.skip("missing_audio", "b", "/x/b.wav", "no such file")
    >>> p.hours(), dict(p.counts()), {n: len(r) for n, r in p.manifests.items()}
    (0.5, {'missing_audio': 1}, {'train': 1, 'test': 0})
    """

    rows: list[dict] = field(default_factory=list)
    manifests: dict[str, list[dict]] = field(default_factory=dict)
    summary: dict = field(default_factory=dict)

    @classmethod
    def of(cls, names: Sequence[str]) -> Prepared:
        """Empty manifests ``names`` (each is written, even if it stays empty)."""
        return cls(manifests={name: [] for name in names})

    def add(self, manifest: str, row: dict) -> None:
        """Add ``row`` to ``manifest`` (and to ``rows``)."""
        self.manifests.setdefault(manifest, []).append(row)
        self.rows.append(row)

    def hours(self) -> float:
        """Total duration of the rows, in hours."""
        return _hours(self.rows)


@dataclass(frozen=True)
class Outputs:
    """What a corpus's preparation writes beside the rows (:func:`write_outputs`).

    Attributes
    ----------
    fields : sequence of str
        Manifest columns, ``ID`` first.
    kinds : sequence of str
        Skip kinds in report order.
    report : str
        File name of the skipped-input report.
    log : logging.Logger, optional
        The preparation's logger (default: this module's).
    """

    fields: Sequence[str]
    kinds: Sequence[str]
    report: str
    log: logging.Logger | None = None

    def write(
        self, save_folder: str, prepared: Prepared, options: dict, title: str
    ) -> dict[str, str]:
        """:func:`write_outputs` of ``prepared``: report, summaries, manifests.

        Every summary records ``options`` and ``prepared.summary``; ``title``
        starts the report and the log line.  Returns the manifests' paths by
        name.
        """
        return write_outputs(
            save_folder,
            prepared.manifests,
            self.fields,
            prepared,
            options,
            self.report,
            title,
            self.kinds,
            extra=prepared.summary,
            log=self.log,
        )


def _hours(rows: Sequence[dict]) -> float:
    return sum(float(r["duration"]) for r in rows) / 3600.0


class KeywordOptions:
    """Base of the option dataclasses a function takes as ``**options``.

    The function keeps its own arguments explicit and reads the others with
    :meth:`from_kwargs` (:class:`PrepOptions` for the preparations,
    :class:`~speechbrain_wsm.data._system.BuildOptions` for the corpus
    builders).
    """

    @classmethod
    def from_kwargs(
        cls,
        caller: str,
        kwargs: Mapping[str, object],
        fixed: Mapping[str, object] | None = None,
        **defaults,
    ) -> KeywordOptions:
        """The options of one call, from its keyword arguments.

        Arguments
        ---------
        caller : str
            The function's name, for the error message.
        kwargs : mapping
            The call's keyword arguments beyond the function's own.
        fixed : mapping, optional
            Options this function does not take, with the value it uses.
        **defaults
            This function's defaults where they differ from the class's.

        Returns
        -------
        KeywordOptions
            An instance of the class it is called on.

        Raises
        ------
        TypeError
            For a keyword that is not an option, naming it and the options.

        Example
        -------
        >>> PrepOptions.from_kwargs("prepare_x", {"redo": True}, audio_check="tail")
        PrepOptions(sample_rate=16000, audio_check='tail', num_workers=None,
                    progress=True, skip_prep=False, redo=True)
        >>> PrepOptions.from_kwargs("prepare_x", {"sample_rte": 8000})
        Traceback (most recent call last):
        ...
        TypeError: prepare_x() got an unexpected keyword argument 'sample_rte' ...
        """
        fixed = dict(fixed or {})
        known = [f.name for f in fields(cls) if f.name not in fixed]
        for key in kwargs:
            if key not in known:
                raise TypeError(
                    f"{caller}() got an unexpected keyword argument {key!r} "
                    f"(its own arguments, or the options {', '.join(known)})"
                )
        return cls(**{**defaults, **kwargs, **fixed})


@dataclass(frozen=True)
class PrepOptions(KeywordOptions):
    """The options every ``prepare_*`` function takes beside its corpus's own.

    Every preparation is ``prepare_<corpus>(data_folder, save_folder, <its
    own arguments>, **options)``: it reads the corpus in ``data_folder`` as
    distributed (a missing folder is a ``FileNotFoundError`` naming the path
    and the layout expected), writes its manifests, their ``.json``
    summaries and a report of the skipped input to ``save_folder`` (created
    if needed), and returns the manifests' paths by name (``{}`` with
    ``skip_prep``).  ``**options`` are the attributes below, taken as keyword
    arguments (``prepare_slurp(..., audio_check="full", skip_prep=True)``, as
    the recipes' YAML files call it) and read by :meth:`from_kwargs`, which
    names a misspelt one.

    Attributes
    ----------
    sample_rate : int, optional
        Expected sample rate; files at another rate are skipped.  ``None``
        accepts any rate.
    audio_check : str
        ``"header"``, ``"tail"`` or ``"full"`` (decode every file): see
        :func:`~speechbrain_wsm.data._probe.probe_audio`.
    num_workers : int, optional
        Threads reading audio headers (default ``min(16, 2 * cpu_count)``).
    progress : bool
        Show progress bars.
    skip_prep : bool
        Do nothing and return ``{}`` (the recipes' ``--skip_prep`` flag).
    redo : bool
        Prepare again even if finished manifests exist.
    """

    sample_rate: int | None = 16000
    audio_check: str = "header"
    num_workers: int | None = None
    progress: bool = True
    skip_prep: bool = False
    redo: bool = False

    def record(self, **corpus) -> dict:
        """The options a summary records: ``corpus``'s and the audio ones.

        A later call with any of them changed prepares the manifests again
        (:func:`is_finished`).

        Example
        -------
        >>> PrepOptions().record(source="/data")
        {'source': '/data', 'sample_rate': 16000, 'audio_check': 'header'}
        """
        return {
            **corpus,
            "sample_rate": self.sample_rate,
            "audio_check": self.audio_check,
        }

    def finished(
        self,
        save_folder: str,
        names: str | Sequence[str],
        recorded: dict,
        what: str,
        log: logging.Logger | None = None,
    ) -> dict[str, str]:
        """The manifests to keep, name to ``.csv`` path; empty to prepare them.

        Empty with ``redo``; otherwise the manifests are kept when
        :func:`is_finished` finds them made with the options ``recorded``
        (:meth:`record`), with a log line saying ``what`` is kept.

        Example
        -------
        >>> import tempfile
        >>> PrepOptions().finished(tempfile.mkdtemp(), ["train"], {}, "X")
        {}
        """
        names = [names] if isinstance(names, str) else list(names)
        if self.redo or not is_finished(save_folder, names, recorded, log):
            return {}
        (log or logger).info("%s already prepared, skipping", what)
        return {n: os.path.join(save_folder, f"{n}.csv") for n in names}

    def probe(
        self,
        items: Sequence,
        path_of: Callable[[object], str],
        id_of: Callable[[object], str],
        skipped: SkippedInput,
        desc: str,
    ) -> Iterator[tuple[object, float]]:
        """Each item whose audio is usable, with its duration in seconds.

        The audio is probed with these options (:func:`probe_files`); an
        unusable file is recorded in ``skipped`` under ``id_of(item)``.

        Example
        -------
        >>> import numpy as np, soundfile as sf, tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "a.flac")
        >>> sf.write(p, np.zeros(1600, dtype="float32"), 16000)
        >>> skipped = SkippedInput()
        >>> list(PrepOptions(progress=False).probe([p, p + "x"], str, os.path.basename,
        ...                                        skipped, "audio"))
        [('...a.flac', 0.1)]
        >>> dict(skipped.counts())
        {'missing_audio': 1}
        """
        for item, info, error in probe_files(
            items,
            path_of,
            self.audio_check,
            self.sample_rate,
            self.num_workers,
            self.progress,
            desc,
        ):
            if error is None:
                frames, rate = info
                yield item, frames / rate
            else:
                skipped.skip(error.kind, id_of(item), path_of(item), error.detail)


def split_list(splits: str | Sequence[str], caller: str) -> list[str]:
    """``splits`` (one name or several) as a list without repeats.

    Raises ``ValueError`` when there is none.

    Example
    -------
    >>> split_list("dev", "prepare_x"), split_list(["a", "b", "a"], "prepare_x")
    (['dev'], ['a', 'b'])
    """
    splits = list(dict.fromkeys([splits] if isinstance(splits, str) else splits))
    if not splits:
        raise ValueError(f"{caller}: no split given")
    return splits


def read_summary(path: str) -> dict | None:
    """The JSON summary at ``path``, or ``None`` if missing or unreadable.

    Example
    -------
    >>> import tempfile, os
    >>> read_summary(os.path.join(tempfile.mkdtemp(), "none.json")) is None
    True
    """
    try:
        with open(path, encoding="utf-8") as f:
            summary = json.load(f)
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) else None


def same_options(recorded, options: dict) -> bool:
    """Whether ``recorded`` (read back from JSON) equals ``options``.

    ``options`` goes through JSON first, so tuples compare equal to the lists
    they are read back as.

    Example
    -------
    >>> same_options({"splits": ["dev"]}, {"splits": ("dev",)})
    True
    """
    return recorded == json.loads(json.dumps(options))


def is_finished(
    save_folder: str,
    names: str | Sequence[str],
    options: dict,
    log: logging.Logger | None = None,
) -> bool:
    """True when every ``<name>.csv`` exists with a summary made with ``options``.

    A manifest without its ``<name>.json`` summary was not written by these
    preparations (they write the summary first), or its summary was lost: its
    options cannot be checked, so it is prepared again.

    Arguments
    ---------
    save_folder : str
        Where the manifests are.
    names : str or sequence of str
        Manifest names (``"dev-clean"``, ``["train", "dev", "test"]``).
    options : dict
        The options of this call (JSON-serialisable).
    log : logging.Logger, optional
        The preparation's logger (default: this module's).

    Returns
    -------
    bool
        Whether all the manifests can be kept.

    Example
    -------
    >>> import tempfile
    >>> is_finished(tempfile.mkdtemp(), ["train"], {"source": "/data"})
    False
    """
    log = log or logger
    for name in [names] if isinstance(names, str) else names:
        csv_path = os.path.join(save_folder, f"{name}.csv")
        if not os.path.isfile(csv_path):
            return False
        summary = read_summary(os.path.join(save_folder, f"{name}.json"))
        if summary is None:
            log.info(
                "%s has no readable %s.json summary; preparing it again",
                csv_path,
                name,
            )
            return False
        if not same_options(summary.get("options"), options):
            log.warning(
                "%s was prepared with other options (%s); preparing it again",
                csv_path,
                summary.get("options"),
            )
            return False
    return True


def write_report(
    path: str,
    title: str,
    skipped: Sequence[tuple[str, str, str, str]],
    kinds: Sequence[str],
) -> None:
    """The skipped-input report: counts per kind, then one line per item.

    Arguments
    ---------
    path : str
        The report file.
    title : str
        Its first line (what was prepared from where).
    skipped : sequence of tuple
        ``(kind, ID, path, detail)`` per item.
    kinds : sequence of str
        The kinds this preparation knows, in report order (each gets a count
        line, even when zero); other kinds follow, sorted.

    Example
    -------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "x_skipped.txt")
    >>> write_report(p, "x", [("odd", "u2", "/b", "?"), ("bad", "u1", "/a", "!")],
    ...              ["bad", "missing"])
    >>> print(open(p).read(), end="")
    # x
    # bad: 1
    # missing: 0
    # odd: 1
    # kind	ID	path	detail
    bad	u1	/a	!
    odd	u2	/b	?
    """
    counts = Counter(kind for kind, *_ in skipped)
    order = {kind: i for i, kind in enumerate(kinds)}
    lines = [f"# {title}"]
    lines += [f"# {kind}: {counts.get(kind, 0)}" for kind in kinds]
    lines += [f"# {k}: {counts[k]}" for k in sorted(counts) if k not in order]
    lines.append("# kind\tID\tpath\tdetail")
    for kind, uid, where, detail in sorted(
        skipped, key=lambda s: (order.get(s[0], len(order)), s[0], s[1], s[2])
    ):
        lines.append(f"{kind}\t{uid}\t{where}\t{detail}")
    atomic_write_text(path, "\n".join(lines) + "\n")


def write_outputs(
    save_folder: str,
    manifests: Mapping[str, Sequence[dict]],
    fields: Sequence[str],
    prepared: Prepared,
    options: dict,
    report_name: str,
    title: str,
    kinds: Sequence[str],
    extra: dict | None = None,
    per_manifest: Mapping[str, dict] | None = None,
    label: str | None = None,
    log: logging.Logger | None = None,
) -> dict[str, str]:
    """Write the report, one ``.json`` summary and one ``.csv`` per manifest.

    The summaries are written before any manifest and the manifests are
    renamed into place last, so a finished ``.csv`` always has its summary
    beside it.  One log line sums the preparation up (a warning naming the
    report when something was skipped).

    Arguments
    ---------
    save_folder : str
        Output folder (created if needed).
    manifests : mapping
        Manifest name to its rows (dicts with the keys in ``fields``).
    fields : sequence of str
        Manifest columns, ``ID`` first.
    prepared : Prepared
        The whole preparation: its skipped input goes to the report and its
        ``hours()`` to the log line (librispeech's ``ScanResult`` does too).
    options : dict
        The options, recorded in every summary for :func:`is_finished`.
    report_name : str
        File name of the report in ``save_folder``.
    title : str
        First line of the report, and start of the log line.
    kinds : sequence of str
        Skip kinds in report order.
    extra : dict, optional
        More fields for every summary.
    per_manifest : mapping, optional
        Manifest name to more fields for its summary only (they may replace
        the default ``skipped`` counts, those of the whole preparation).
    label : str, optional
        Start of the log line instead of ``title``.
    log : logging.Logger, optional
        The preparation's logger (default: this module's).

    Returns
    -------
    dict
        Manifest name to ``.csv`` path.

    Example
    -------
    >>> import tempfile, os
    >>> from speechbrain_wsm.data.manifests import MANIFEST_FIELDS
    >>> d = tempfile.mkdtemp()
    >>> row = dict(ID="1-2-0003", duration="1.5000", wav="/a.flac", spk_id="1",
    ...            wrd="HI")
    >>> out = write_outputs(d, {"dev": [row]}, MANIFEST_FIELDS, Prepared(rows=[row]),
    ...                     {"source": "/x"}, "dev_skipped.txt", "dev from /x",
    ...                     ["missing_audio"])
    >>> sorted(os.listdir(d))
    ['dev.csv', 'dev.json', 'dev_skipped.txt']
    >>> is_finished(d, "dev", {"source": "/x"})
    True
    """
    os.makedirs(save_folder, exist_ok=True)
    report = os.path.join(save_folder, report_name)
    write_report(report, title, prepared.skipped, kinds)
    counts = prepared.counts()
    for name, rows in manifests.items():
        meta = {
            "options": options,
            "utterances": len(rows),
            "hours": round(_hours(rows), 4),
            "skipped": dict(counts),
            **(extra or {}),
            **(per_manifest or {}).get(name, {}),
        }
        atomic_write_text(
            os.path.join(save_folder, f"{name}.json"),
            json.dumps(meta, indent=1) + "\n",
        )
    outputs = {}
    for name, rows in manifests.items():
        path = os.path.join(save_folder, f"{name}.csv")
        write_manifest(path, rows, fields)
        outputs[name] = path

    label = label or title
    if list(manifests) == [label]:
        sizes = str(len(manifests[label]))
    else:
        sizes = ", ".join(f"{n}={len(r)}" for n, r in manifests.items())
    text = f"{label}: {sizes} utterances, {prepared.hours():.2f} h"
    log = log or logger
    if counts:
        known = [k for k in kinds if counts.get(k)]
        known += [k for k in sorted(counts) if k not in kinds]
        log.warning(
            "%s; skipped %d (%s), listed in %s",
            text,
            sum(counts.values()),
            ", ".join(f"{k}={counts[k]}" for k in known),
            report,
        )
    else:
        log.info("%s; nothing skipped", text)
    return outputs
