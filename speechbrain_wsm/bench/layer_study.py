"""Layer study: the same small CTC head trained on each layer of a frozen encoder.

Which layers of a pretrained SSL encoder carry what CTC ASR needs? For every
hidden state ``l`` (0 = the input of the first layer, then each layer's
output) of a frozen encoder, the same head (LayerNorm, a one-layer BiLSTM,
a linear CTC output; same seed, same steps, same batches) is trained on that
state alone and its greedy CER / WER are measured: the analysis behind the
choice of taps in hierarchical feature fusion (Huo et al., ICASSP 2023; the
head and protocol here are this project's reconstruction, not the paper's).

The encoder is :func:`speechbrain_wsm.models.ssl.load_ssl_encoder` (the one
upstream; any ``ssl_source``) and its hidden states are computed once per
utterance into the on-disk feature cache of :mod:`speechbrain_wsm.models.ssl`
(``--cache``), so every layer's head reads them from there. Data: a folder in
the LibriSpeech layout (``--train`` to fit, ``--test`` to score; by default
the 16 learning utterances of ``tests/samples/learning`` for both, where the
study measures how easily each layer's features are fitted).

Writes ``layer_study.csv`` / ``.json`` and ``wer_/cer_layer<l>.txt`` into
``--out`` and prints a markdown table with a text plot of CER against layer.

Run: ``python -m speechbrain_wsm.bench.layer_study --ssl-source <folder>``;
``--quick`` builds a tiny random Hugging Face encoder and trains a few steps.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch
from torch import nn

from speechbrain_wsm.bench.common import (
    TINY_HF_ARCH,
    machine_description,
    write_table,
)
from speechbrain_wsm.recipe.optim import make_optimizer

SAMPLES = Path(__file__).resolve().parents[2] / "tests" / "samples" / "learning"
DEFAULT_DATA = SAMPLES / "LibriSpeech" / "train-learn"


class LayerHead(nn.Module):
    """LayerNorm, one BiLSTM layer, linear CTC output: the head every layer gets.

    Example
    -------
    >>> head = LayerHead(16, 5, hidden=8)
    >>> head(torch.randn(2, 7, 16)).shape
    torch.Size([2, 7, 5])
    """

    def __init__(self, d_in: int, vocab: int, hidden: int = 128):
        super().__init__()
        self.norm = nn.LayerNorm(d_in)
        self.rnn = nn.LSTM(d_in, hidden, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * hidden, vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[batch, frame, d_in]`` -> log-probabilities ``[batch, frame, vocab]``."""
        y, _ = self.rnn(self.norm(x))
        return self.out(y).log_softmax(-1)


def read_split(folder) -> list:
    """Utterances (``ID``, ``wav``, ``wrd``) of a folder in the LibriSpeech layout."""
    from speechbrain_wsm.data.librispeech import scan_split

    if not Path(folder).is_dir():
        raise SystemExit(f"no such folder: {folder} (pass --train / --test)")
    result = scan_split(str(folder), progress=False)
    if not result.utterances:
        raise SystemExit(f"no utterances with transcripts under {folder}")
    return sorted(result.utterances, key=lambda u: u.ID)


def encode_split(encoder, utterances, batch_size: int = 4):
    """Every hidden state of every utterance: ``{ID: [state, frame, feature]}`` (float32).

    Goes through the encoder's feature cache: a second call reads from disk.
    """
    from speechbrain_wsm.data.audio import load_audio

    out = {}
    for i in range(0, len(utterances), batch_size):
        chunk = utterances[i : i + batch_size]
        wavs = [load_audio(u.wav) for u in chunk]
        longest = max(w.shape[0] for w in wavs)
        batch = torch.zeros(len(wavs), longest)
        for j, w in enumerate(wavs):
            batch[j, : w.shape[0]] = w
        lens = torch.tensor([w.shape[0] / longest for w in wavs])
        states = torch.stack(encoder(batch, lens, ids=[u.ID for u in chunk]))
        frames = encoder.output_lengths(torch.tensor([w.shape[0] for w in wavs]))
        for j, u in enumerate(chunk):
            out[u.ID] = states[:, j, : int(frames[j])].float().clone()
    return out


def _batches(ids, batch_size, generator):
    order = torch.randperm(len(ids), generator=generator).tolist()
    return [
        [ids[k] for k in order[i : i + batch_size]]
        for i in range(0, len(ids), batch_size)
    ]


def _pad(feats, layer, ids):
    seqs = [feats[i][layer] for i in ids]
    lengths = torch.tensor([s.shape[0] for s in seqs])
    return nn.utils.rnn.pad_sequence(seqs, batch_first=True), lengths


def train_layer(
    layer: int,
    train_feats: dict,
    targets: dict,
    vocab: int,
    steps: int,
    batch_size: int,
    lr: float,
    hidden: int,
    seed: int = 0,
) -> LayerHead:
    """Train a fresh :class:`LayerHead` on hidden state ``layer`` for ``steps`` steps."""
    torch.manual_seed(seed)
    d_in = next(iter(train_feats.values())).shape[-1]
    head = LayerHead(d_in, vocab, hidden)
    opt = make_optimizer(torch.optim.Adam, head.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    ids = sorted(train_feats)
    done = 0
    while done < steps:
        for batch in _batches(ids, batch_size, gen):
            x, lengths = _pad(train_feats, layer, batch)
            tok = [torch.tensor(targets[i]) for i in batch]
            tok_lens = torch.tensor([len(t) for t in tok])
            loss = nn.functional.ctc_loss(
                head(x).transpose(0, 1),
                nn.utils.rnn.pad_sequence(tok, batch_first=True),
                lengths,
                tok_lens,
                zero_infinity=True,
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
            done += 1
            if done >= steps:
                break
    return head.eval()


def score_layer(head, layer, feats, utterances, tokenizer, out_dir: Path) -> dict:
    """Greedy decoding of ``utterances``; writes ``wer_/cer_layer<l>.txt``; CER / WER."""
    from speechbrain_wsm.decoding import build_decoder
    from speechbrain_wsm.scoring import write_error_rate_files

    greedy = build_decoder(tokenizer, "greedy")
    ids = [u.ID for u in utterances]
    hyps = []
    with torch.no_grad():
        for i in range(0, len(ids), 8):
            x, lengths = _pad(feats, layer, ids[i : i + 8])
            hyps += greedy(head(x), lengths.float() / x.shape[1])
    summary = write_error_rate_files(
        str(out_dir), f"layer{layer}", ids, [u.wrd for u in utterances], hyps
    )
    return {"CER": summary["CER"], "WER": summary["WER"]}


def text_plot(rows, key: str = "cer", width: int = 40) -> str:
    """A bar per layer, ``width`` characters = the worst value.

    Example
    -------
    >>> print(text_plot([{"layer": 0, "cer": 50.0}, {"layer": 1, "cer": 25.0}], width=4))
    layer  0 |#### 50.00
    layer  1 |## 25.00
    """
    top = max((r[key] for r in rows), default=0.0) or 1.0
    return "\n".join(
        f"layer {r['layer']:>2} |{'#' * round(width * r[key] / top)} {r[key]:.2f}"
        for r in rows
    )


def _tiny_source(folder: Path) -> Path:
    """A tiny random Hugging Face wav2vec 2.0 (:data:`~speechbrain_wsm.bench.common.TINY_HF_ARCH`)
    saved to ``folder``."""
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    torch.manual_seed(0)
    Wav2Vec2Model(Wav2Vec2Config(**TINY_HF_ARCH)).save_pretrained(folder)
    return folder


def run(args) -> tuple[list[dict], str]:
    from speechbrain_wsm.data.tokenizers import CharTokenizer
    from speechbrain_wsm.models.ssl import load_ssl_encoder
    from speechbrain_wsm.recipe.asr import LIBRISPEECH_UNITS

    if args.threads:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    source = args.ssl_source
    if source is None:
        source = _tiny_source(Path(tempfile.mkdtemp(prefix="layer_study_")))
    cache = args.cache or args.out / "feature_cache"
    encoder = load_ssl_encoder(source, feature_cache_dir=cache)
    tokenizer = CharTokenizer(LIBRISPEECH_UNITS)
    train_utts = read_split(args.train)
    test_utts = read_split(args.test or args.train)
    train = encode_split(encoder, train_utts)
    test = (
        train if args.test in (None, args.train) else encode_split(encoder, test_utts)
    )
    targets = {u.ID: tokenizer.encode(u.wrd) for u in train_utts}
    layers = args.layers or list(range(encoder.num_hidden_states))
    bad = [layer for layer in layers if not 0 <= layer < encoder.num_hidden_states]
    if bad:
        raise SystemExit(
            f"--layers {bad}: the encoder has hidden states 0 to {encoder.num_hidden_states - 1}"
        )
    rows = []
    for layer in layers:
        head = train_layer(
            layer,
            train,
            targets,
            len(tokenizer),
            args.steps,
            args.batch,
            args.lr,
            args.hidden,
        )
        rates = score_layer(head, layer, test, test_utts, tokenizer, args.out)
        row = {"layer": layer, "cer": rates["CER"], "wer": rates["WER"]}
        rows.append(row)
        print(
            f"  layer {layer:>2}: CER {row['cer']:.2f}  WER {row['wer']:.2f}",
            flush=True,
        )
    return rows, str(source)


def markdown(rows) -> str:
    """Layer, CER, WER table."""
    lines = ["| layer | CER (%) | WER (%) |", "|---|---|---|"]
    lines += [f"| {r['layer']} | {r['cer']:.2f} | {r['wer']:.2f} |" for r in rows]
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ssl-source", default=None, help="HF folder or pretraining output")
    p.add_argument(
        "--train", type=Path, default=DEFAULT_DATA, help="LibriSpeech-layout folder"
    )
    p.add_argument("--test", type=Path, default=None, help="default: --train")
    p.add_argument("--layers", type=int, nargs="*", default=None, help="default: all")
    p.add_argument("--steps", type=int, default=300, help="training steps per layer")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--hidden", type=int, default=128, help="BiLSTM width per direction")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--cache", type=Path, default=None, help="feature cache folder")
    p.add_argument("--out", type=Path, default=Path("bench_results") / "layer_study")
    p.add_argument(
        "--quick", action="store_true", help="tiny random encoder, few steps"
    )
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.hidden, args.threads = 4, 16, 1
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    rows, source = run(args)
    meta = {
        "ssl_source": source,
        "train": str(args.train),
        "test": str(args.test or args.train),
        "steps": args.steps,
        "head": f"LayerNorm + BiLSTM {args.hidden}x2 + linear CTC",
        "machine": machine_description("cpu"),
        "note": "layer probe of hierarchical feature fusion: reconstruction, "
        "not from the paper",
    }
    write_table(rows, args.out, "layer_study", meta)
    print(
        f"\n## Layer study: {source}\n\n{markdown(rows)}\n\nCER by layer\n{text_plot(rows)}"
    )
    (args.out / "layer_study.md").write_text(markdown(rows) + "\n")
    print(json.dumps({"written": str(args.out)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
