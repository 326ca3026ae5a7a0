"""Tiny MP3S fixtures: dataset trees in their distributed layouts, and encoders.

``python tests/samples/mp3s/fixtures.py`` rebuilds the dataset trees beside
this file from the committed LibriVox sample
(``tests/samples/LibriSpeech/test-clean``, public domain): short cuts of
those five utterances, written in each corpus's layout and file format, with
made-up labels and transcripts (Welsh sentences written for the purpose).
They test the preparations and the recipes' plumbing, nothing else.

Tiny encoders for the probe tests live in ``tests/tiny_models.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

HERE = Path(__file__).resolve().parent
LIBRIVOX = HERE.parent / "LibriSpeech" / "test-clean" / "10002" / "1"
UTTS = ["0870", "0880", "0890", "0920", "0930"]
RATE = 16000


def _clip(k: int, start: float, length: float, rate: int = RATE) -> np.ndarray:
    """``length`` seconds of LibriVox utterance ``k`` from ``start``."""
    audio, sr = sf.read(LIBRIVOX / f"10002-1-{UTTS[k % 5]}.flac", dtype="float32")
    assert sr == RATE
    a = int(start * sr)
    out = audio[a : a + int(length * sr)]
    if rate != sr:
        import torch
        import torchaudio.functional as AF

        out = AF.resample(torch.from_numpy(out), sr, rate).numpy()
    return out


# --------------------------------------------------------------------------- #
# Dataset trees
# --------------------------------------------------------------------------- #

CV_HEADER = (
    "client_id\tpath\tsentence\tup_votes\tdown_votes\tage\tgender\taccents\t"
    "locale\tsegment"
)
CV_SENTENCES = {
    "train": [
        "Mae hi'n braf heddiw.",
        "Diolch yn fawr iawn!",
        '"Helo," meddai hi.',
        "Rydw i'n hoffi coffi.",
    ],
    "dev": ["Ble mae'r orsaf?", "Nos da, cariad."],
    "test": ["Mae'r tywydd yn oer.", "Croeso i Gymru."],
}


def build_commonvoice(root: Path) -> None:
    lang = root / "CommonVoice" / "cv-corpus-11.0-2022-09-21" / "cy"
    (lang / "clips").mkdir(parents=True, exist_ok=True)
    n = 0
    for split, sentences in CV_SENTENCES.items():
        lines = [CV_HEADER]
        for sentence in sentences:
            name = f"common_voice_cy_{18000000 + n}.mp3"
            sf.write(
                lang / "clips" / name, _clip(n, 0.3, 1.2, 48000), 48000, format="MP3"
            )
            speaker = hashlib.sha512(f"speaker{n % 3}".encode()).hexdigest()
            lines.append(f"{speaker}\t{name}\t{sentence}\t2\t0\t\t\t\tcy\t")
            n += 1
        (lang / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")


VOX = {
    "id10001": [("1zcIwhmdeo4", "00001"), ("7gWzIy6yIIk", "00002")],
    "id10002": [("6WO410QOeuo", "00001"), ("C7k7C-PDvAA", "00003")],
    "id10270": [("5r0dWxy17C8", "00001"), ("x6uYqmx31kE", "00002")],
    "id10271": [("1gtz-CUIygI", "00001"), ("37nktPRUJ58", "00004")],
}


def build_voxceleb(root: Path) -> None:
    base = root / "VoxCeleb1"
    for k, (spk, utts) in enumerate(VOX.items()):
        for j, (video, utt) in enumerate(utts):
            folder = base / "wav" / spk / video
            folder.mkdir(parents=True, exist_ok=True)
            sf.write(folder / f"{utt}.wav", _clip(k, 0.5 + j, 0.75), RATE, "PCM_16")
    a, b = VOX["id10270"], VOX["id10271"]
    trials = [
        ("1", f"id10270/{a[0][0]}/{a[0][1]}.wav", f"id10270/{a[1][0]}/{a[1][1]}.wav"),
        ("0", f"id10270/{a[0][0]}/{a[0][1]}.wav", f"id10271/{b[0][0]}/{b[0][1]}.wav"),
        ("1", f"id10271/{b[0][0]}/{b[0][1]}.wav", f"id10271/{b[1][0]}/{b[1][1]}.wav"),
        ("0", f"id10271/{b[1][0]}/{b[1][1]}.wav", f"id10270/{a[1][0]}/{a[1][1]}.wav"),
    ]
    (base / "veri_test2.txt").write_text(
        "".join(" ".join(t) + "\n" for t in trials), encoding="utf-8"
    )


IEMOCAP_LABELS = ["neu", "hap", "exc", "sad", "ang"]


def build_iemocap(root: Path) -> None:
    base = root / "IEMOCAP" / "IEMOCAP_full_release"
    for s in range(1, 6):
        dialog = f"Ses0{s}F_impro0{s}"
        wav_dir = base / f"Session{s}" / "sentences" / "wav" / dialog
        eva_dir = base / f"Session{s}" / "dialog" / "EmoEvaluation"
        wav_dir.mkdir(parents=True, exist_ok=True)
        eva_dir.mkdir(parents=True, exist_ok=True)
        lines = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
        for j, spk in enumerate("FM"):
            uid = f"{dialog}_{spk}00{j}"
            sf.write(wav_dir / f"{uid}.wav", _clip(s + j, 0.4, 0.75), RATE, "PCM_16")
            label = IEMOCAP_LABELS[(s + j) % 5]
            t = 2.0 * j
            lines += [
                f"[{t + 1.0:.4f} - {t + 1.75:.4f}]\t{uid}\t{label}\t[2.5000, 3.0000, 3.0000]",
                f"C-E1:\t{label.title()};\t()",
                "A-E1:\tval 3; act 3; dom  3;\t()",
                "",
            ]
        # a labelled turn outside the 4 classes (left out by design)
        lines += [
            f"[5.0000 - 6.0000]\t{dialog}_F002\tfru\t[2.0000, 3.5000, 3.5000]",
            "",
        ]
        (eva_dir / f"{dialog}.txt").write_text("\n".join(lines), encoding="utf-8")


SLURP_PROMPTS = {
    "train": [
        (101, "wake me up at eight am", "alarm", "alarm_set"),
        (102, "what is the weather like today", "weather", "weather_query"),
    ],
    "devel": [(201, "play some jazz music", "play", "play_music")],
    "test": [(301, "turn off the kitchen lights", "iot", "iot_hue_lightoff")],
}


def build_slurp(root: Path) -> None:
    base = root / "SLURP"
    text = base / "dataset" / "slurp"
    audio = base / "slurp_real"
    text.mkdir(parents=True, exist_ok=True)
    audio.mkdir(parents=True, exist_ok=True)
    n = 0
    for split, prompts in SLURP_PROMPTS.items():
        lines = []
        for slurp_id, sentence, scenario, intent in prompts:
            recordings = []
            for suffix in ("", "-headset"):
                name = f"audio-{1490000000 + n}{suffix}.flac"
                sf.write(audio / name, _clip(n, 0.2, 0.9), RATE, "PCM_16")
                recordings.append(
                    {"file": name, "wer": 0.0, "ent_wer": 0.0, "status": "correct"}
                )
                n += 1
            entry = {
                "slurp_id": slurp_id,
                "sentence": sentence,
                "sentence_annotation": sentence,
                "intent": intent,
                "action": intent.split("_", 1)[1],
                "tokens": [
                    {"surface": w, "id": i, "lemma": w, "pos": "X"}
                    for i, w in enumerate(sentence.split())
                ],
                "scenario": scenario,
                "recordings": recordings,
                "entities": [],
            }
            lines.append(json.dumps(entry))
        (text / f"{split}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


BUCKEYE = {"s01": (3, "s0101a"), "s36": (4, "s3601a"), "s38": (2, "s3801a")}
_TRANS = {
    0: "and mister john dashwood had then leisure to consider",
    1: "he was not an ill disposed young man",
    2: "unless to be rather cold hearted and rather selfish",
    3: "had he married a more a amiable woman",
    4: "he might even have been made amiable himself",
}


def build_buckeye(root: Path) -> None:
    base = root / "Buckeye"
    header = [
        "signal {stem}",
        "type 0",
        "color 121",
        "comment | created using xlabel Fri Jan 16 11:55:48 1998",
        "font -misc-*-bold-*-*-*-15-*-*-*-*-*-*-*",
        "separator ;",
        "nfields 4",
        "#",
    ]
    for spk, (k, stem) in BUCKEYE.items():
        audio, _ = sf.read(LIBRIVOX / f"10002-1-{UTTS[k]}.flac", dtype="float32")
        audio = audio[: int(3.0 * RATE)]
        folder = base / spk
        folder.mkdir(parents=True, exist_ok=True)
        sf.write(folder / f"{stem}.wav", audio, RATE, "PCM_16")
        words = _TRANS[k].split()
        lines = [h.format(stem=stem) for h in header]
        lines.append("    0.100000  121 {B_TRANS}; U; U; null")
        t, step = 0.15, 2.7 / len(words)
        for w in words:
            t += step
            lines.append(f"    {t:.6f}  121 {w}; x; x; NN")
        lines.append(f"    {t + 0.1:.6f}  121 <SIL>; U; U; S")
        lines.append(f"    {t + 0.12:.6f}  121 {{E_TRANS}}; U; U; null")
        (folder / f"{stem}.words").write_text("\n".join(lines) + "\n", encoding="utf-8")


def build_all(root: Path = HERE) -> None:
    """Rebuild every dataset tree under ``root``."""
    build_commonvoice(root)
    build_voxceleb(root)
    build_iemocap(root)
    build_slurp(root)
    build_buckeye(root)


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parents[2]))
    build_all(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
    total = sum(
        os.path.getsize(os.path.join(d, f))
        for d, _, fs in os.walk(HERE)
        for f in fs
        if not f.endswith((".py", ".pyc"))
    )
    print(f"fixtures under {HERE}: {total / 1024:.0f} KB")
