"""Room impulse responses for reverberation augmentation, simulated offline.

SpeechBrain's ``AddReverb`` convolves training audio with impulse responses
listed in a CSV file; the usual source (the RIRS_NOISES corpus) is a download.
:func:`build_rirs` simulates shoebox rooms instead, with pyroomacoustics'
image-source method (randomised, so the echoes do not comb): room sizes from a
small office to a classroom, reverberation times from a dry booth to a
lively living room, source and microphone anywhere in the room. The CSV is in
the format ``AddReverb`` reads (``ID, duration, wav, wav_format, wav_opts``),
so a recipe's ``rir_csv`` takes it directly.

Command line::

    python -m speechbrain_wsm.data.rirs OUT [--count 100] [--seed 0]
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

__all__ = ["build_rirs"]

#: reverberation times (s) drawn uniformly; the image-source order is capped
#: (see :func:`_simulate`), so the longest come out somewhat drier
RT60 = (0.15, 0.6)
#: room sizes (m): length, width, height, each drawn uniformly
ROOM_MIN, ROOM_MAX = (3.0, 2.5, 2.4), (10.0, 8.0, 3.5)
#: highest image-source order: keeps a room under a second to simulate
MAX_ORDER = 20


def _simulate(rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    import pyroomacoustics as pra

    dims = rng.uniform(ROOM_MIN, ROOM_MAX)
    absorption, order = pra.inverse_sabine(rng.uniform(*RT60), dims)
    room = pra.ShoeBox(
        dims,
        fs=sample_rate,
        materials=pra.Material(absorption),
        max_order=min(order, MAX_ORDER),
        use_rand_ism=True,
        max_rand_disp=0.05,
    )
    margin = 0.5
    room.add_source(rng.uniform(margin, dims - margin))
    room.add_microphone(rng.uniform(margin, dims - margin))
    room.compute_rir()
    rir = np.asarray(room.rir[0][0], dtype=np.float32)
    # start at the direct path: AddReverb keeps the signal's timing then
    return rir[int(np.argmax(np.abs(rir))) :]


def build_rirs(
    out: str | Path, count: int = 100, seed: int = 0, sample_rate: int = 16000
) -> Path:
    """Write ``count`` simulated impulse responses and their CSV; return the CSV.

    Files: ``<out>/rir_0000.wav`` ... and ``<out>/rirs.csv``. The same seed
    gives the same rooms. Raises ``ImportError`` with the install line when
    pyroomacoustics is missing.

    Example
    -------
    >>> import tempfile, csv
    >>> path = build_rirs(tempfile.mkdtemp(), count=2)
    >>> rows = list(csv.DictReader(open(path)))
    >>> len(rows), 0.05 < float(rows[0]["duration"]) < 2.0
    (2, True)
    """
    try:
        import pyroomacoustics  # noqa: F401
    except ImportError:
        raise ImportError(
            "simulated room impulse responses need pyroomacoustics "
            "(pip install pyroomacoustics, or pip install -e .)"
        ) from None
    import soundfile as sf

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(count):
        rir = _simulate(np.random.default_rng([seed, i]), sample_rate)
        rir /= np.abs(rir).max()
        path = out / f"rir_{i:04d}.wav"
        sf.write(path, rir, sample_rate, subtype="FLOAT")
        rows.append(
            {
                "ID": f"rir_{i:04d}",
                "duration": f"{len(rir) / sample_rate:.4f}",
                "wav": str(path.resolve()),
                "wav_format": "wav",
                "wav_opts": "",
            }
        )
    csv_path = out / "rirs.csv"
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return csv_path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m speechbrain_wsm.data.rirs", description=__doc__.split("\n")[0]
    )
    p.add_argument("out", help="folder for the .wav files and rirs.csv")
    p.add_argument("--count", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.count < 1:
        p.error("--count must be at least 1")
    print(build_rirs(args.out, args.count, args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
