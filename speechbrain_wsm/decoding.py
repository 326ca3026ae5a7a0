"""CTC decoding: greedy, prefix beam search with an optional n-gram LM, and
lexicon-constrained beam search with a word n-gram LM.

All decode frame-level log-probabilities ``[batch, frame, unit]`` whose unit
0 is the CTC blank (the convention of :mod:`speechbrain_wsm.data.tokenizers`).
Lengths are relative (``wav_lens`` in ``[0, 1]``, SpeechBrain's convention at
Brain level), as the recipes have them.

:func:`build_decoder` turns a recipe's decoder options into one function
``(log_probs, lengths) -> texts``:

* ``greedy``: the best unit per frame;
* ``beam``: SpeechBrain's ``CTCPrefixBeamSearcher``; with a KenLM model
  (``.arpa`` or ``.bin``, needs the ``kenlm`` Python package) it does shallow
  fusion with word-level n-gram scores, and may still spell words the LM has
  never seen;
* ``lexicon``: flashlight's lexicon decoder (``flashlight-text``, through
  torchaudio's ``ctc_decoder``), which only ever outputs words of a lexicon
  and scores them with a KenLM n-gram (``kenlm_model_path``; the KenLM query
  code ships inside flashlight-text's wheel). The LM and the lexicon come from
  :func:`speechbrain_wsm.data.lm.build_word_lm`.

In both LM decoders a hypothesis scores ``log P_CTC + lm_weight * ln P_LM +
word_bonus * words`` (natural logarithms), so the two take the same
``lm_weight`` and ``word_bonus``.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from collections.abc import Callable

import torch
from speechbrain.decoders.ctc import CTCPrefixBeamSearcher

from speechbrain_wsm.errors import ConfigError

__all__ = [
    "DECODERS",
    "CTCBeamDecoder",
    "CTCLexiconDecoder",
    "build_decoder",
    "check_decoder_files",
    "ctc_greedy_decode",
    "frame_lengths",
    "vocabulary",
]

logger = logging.getLogger(__name__)


def frame_lengths(
    rel_lengths: torch.Tensor | None, num_frames: int, batch: int
) -> list[int]:
    """Absolute frame counts from relative lengths (all ``num_frames`` if None).

    Example
    -------
    >>> frame_lengths(torch.tensor([1.0, 0.5]), 10, 2)
    [10, 5]
    """
    if rel_lengths is None:
        return [num_frames] * batch
    return (
        torch.round(rel_lengths.float() * num_frames)
        .long()
        .clamp(0, num_frames)
        .tolist()
    )


def ctc_greedy_decode(
    log_probs: torch.Tensor, rel_lengths=None, blank: int = 0
) -> list[list[int]]:
    """Best unit per frame, repeats merged, blanks removed.

    Arguments
    ---------
    log_probs : torch.Tensor
        ``[batch, frame, unit]`` scores (log-probabilities or logits).
    rel_lengths : torch.Tensor, optional
        ``[batch]`` relative lengths; frames past them are ignored.
    blank : int
        Index of the CTC blank.

    Returns
    -------
    list of list of int
        The unit sequence of each utterance.

    Example
    -------
    >>> lp = torch.log(torch.tensor([[[.1, .9, 0], [.1, .9, 0], [.9, .1, 0],
    ...                               [0, .1, .9], [0, .1, .9]]]))
    >>> ctc_greedy_decode(lp)
    [[1, 2]]
    >>> ctc_greedy_decode(lp, torch.tensor([0.6]))
    [[1]]
    """
    if log_probs.dim() != 3:
        raise ValueError(
            f"expected [batch, frame, unit] scores, got {tuple(log_probs.shape)}"
        )
    best = log_probs.argmax(-1).cpu()
    out = []
    for seq, n in zip(
        best, frame_lengths(rel_lengths, best.shape[1], best.shape[0]), strict=True
    ):
        seq = seq[:n]
        if n:
            keep = torch.ones(n, dtype=torch.bool)
            keep[1:] = seq[1:] != seq[:-1]
            seq = seq[keep & (seq != blank)]
        out.append(seq.tolist())
    return out


def vocabulary(tokenizer) -> tuple[list[str], str]:
    """Unit strings in index order and the word-boundary token, for the searcher.

    Character units map ``<space>`` to ``" "``; sentencepiece pieces keep
    their ``▁`` word-start marker.
    """
    if hasattr(tokenizer, "units"):
        return [" " if u == "<space>" else u for u in tokenizer.units], " "
    sp = getattr(tokenizer, "sp", None) or getattr(tokenizer, "processor", None)
    if sp is not None:
        return [sp.id_to_piece(i) for i in range(sp.get_piece_size())], "▁"
    raise TypeError(f"cannot list the units of {type(tokenizer).__name__}")


class CTCBeamDecoder:
    """CTC prefix beam search over a tokenizer's units, optionally with an LM.

    Arguments
    ---------
    tokenizer : CharTokenizer or SentencePieceTokenizer
        Units with the blank at index 0.
    beam_size : int
        Hypotheses kept per frame.
    kenlm_model_path : str, optional
        A word n-gram LM (``.arpa``/``.bin``) for shallow fusion; needs the
        ``kenlm`` package.
    lm_weight : float
        LM weight (``alpha``).
    word_bonus : float
        Score added per word (``beta``), balancing the LM's short-output bias.

    Example
    -------
    >>> from speechbrain_wsm.data.tokenizers import CharTokenizer
    >>> tok = CharTokenizer.from_texts(["AB"])
    >>> a, b = tok.encode("AB")
    >>> p = torch.full((1, 4, len(tok)), 1e-3)
    >>> for t, u in enumerate([a, 0, b, b]):
    ...     p[0, t, u] = 1.0
    >>> CTCBeamDecoder(tok, beam_size=4)(p.log_softmax(-1))
    ['AB']
    """

    def __init__(
        self,
        tokenizer,
        beam_size: int = 20,
        kenlm_model_path=None,
        lm_weight=0.5,
        word_bonus=1.0,
    ):
        vocab, boundary = vocabulary(tokenizer)
        self.searcher = CTCPrefixBeamSearcher(
            blank_index=0,
            vocab_list=vocab,
            space_token=" ",
            spm_token="▁",
            kenlm_model_path=kenlm_model_path,
            alpha=lm_weight,
            beta=word_bonus if kenlm_model_path else 0.0,
            beam_size=beam_size,
        )
        self.boundary = boundary

    def __call__(self, log_probs: torch.Tensor, rel_lengths=None) -> list[str]:
        """Decode ``[batch, frame, unit]`` log-probabilities into texts."""
        if rel_lengths is None:
            rel_lengths = torch.ones(log_probs.shape[0])
        hyps = self.searcher(log_probs.float().cpu(), rel_lengths.float().cpu())
        return [" ".join(h[0].text.split()) for h in hyps]


class CTCLexiconDecoder:
    """Lexicon-constrained CTC beam search with a word n-gram LM (flashlight).

    Hypotheses only grow along the spellings of the lexicon's words, so every
    output word is a lexicon word; the KenLM n-gram scores each word when it
    ends. Between words the decoder may emit the word-boundary unit
    (``<space>`` for characters; sentencepiece pieces carry their own ``▁``).

    Arguments
    ---------
    tokenizer : CharTokenizer or SentencePieceTokenizer
        Units with the blank at index 0.
    kenlm_model_path : str
        A word n-gram LM (``.arpa`` or KenLM ``.bin``).
    lexicon : str
        A lexicon file; its first column lists the words (one a line, as
        :func:`speechbrain_wsm.data.lm.write_lexicon` writes). Each word is
        spelled with ``tokenizer``'s units; words it cannot spell (a unit
        would be ``<unk>``) are left out.
    beam_size : int
        Hypotheses kept per frame.
    lm_weight : float
        Weight of the natural-log LM probability.
    word_bonus : float
        Score added per word.
    beam_threshold : float
        Hypotheses scoring this far below the best are pruned.

    Example
    -------
    With an LM and lexicon from :func:`speechbrain_wsm.data.lm.build_word_lm`
    (``tests/unit/test_lm.py`` runs this)::

        lm, lexicon = build_word_lm(["THE CAT SAT", "THE DOG SAT"], "lm")
        decode = CTCLexiconDecoder(tokenizer, lm, lexicon, beam_size=20)
        decode(log_probs, rel_lengths)  # ['THE CAT SAT', ...]
    """

    def __init__(
        self,
        tokenizer,
        kenlm_model_path: str,
        lexicon: str,
        beam_size: int = 20,
        lm_weight: float = 0.5,
        word_bonus: float = 1.0,
        beam_threshold: float = 25.0,
    ):
        from speechbrain_wsm.data.lm import read_lexicon_words, spell

        try:
            from torchaudio.models.decoder import ctc_decoder
        except (ImportError, RuntimeError):
            raise ImportError(
                "--decoder lexicon needs the flashlight-text package "
                "(pip install flashlight-text, or pip install -e '.[lm]')"
            ) from None
        units, _ = vocabulary(tokenizer)
        if hasattr(tokenizer, "units"):
            units = list(tokenizer.units)  # "<space>" stays a unit name
        silence = "<space>" if "<space>" in units else units[0]
        entries, left_out = [], 0
        for word in read_lexicon_words(lexicon):
            spelling = spell(word, tokenizer)
            if spelling is None:
                left_out += 1
            else:
                entries.append(f"{word}\t{' '.join(spelling)}\n")
        if not entries:
            raise ValueError(
                f"the model's units spell no word of the lexicon '{lexicon}'"
            )
        self.words = len(entries)
        self.left_out = left_out
        if left_out:
            logger.info(
                "lexicon %s: %d word(s) the model's units cannot spell left out",
                lexicon,
                left_out,
            )
        with tempfile.TemporaryDirectory(prefix="sbwsm-lexicon-") as tmp:
            path = os.path.join(tmp, "lexicon.txt")
            with open(path, "w", encoding="utf-8") as f:
                f.writelines(entries)
            self.decoder = ctc_decoder(
                lexicon=path,
                tokens=units,
                lm=str(kenlm_model_path),
                nbest=1,
                beam_size=beam_size,
                beam_threshold=beam_threshold,
                # flashlight adds lm_weight * log10 P (KenLM's scores)
                lm_weight=lm_weight * math.log(10),
                word_score=word_bonus,
                blank_token=units[0],
                sil_token=silence,
                unk_word="<unk>",
            )
        self.units = len(units)

    def __call__(self, log_probs: torch.Tensor, rel_lengths=None) -> list[str]:
        """Decode ``[batch, frame, unit]`` log-probabilities into texts."""
        if log_probs.dim() != 3:
            raise ValueError(
                f"expected [batch, frame, unit] scores, got {tuple(log_probs.shape)}"
            )
        emissions = log_probs[..., : self.units].float().cpu().contiguous()
        lengths = frame_lengths(rel_lengths, emissions.shape[1], emissions.shape[0])
        texts = []
        for i, n in enumerate(lengths):
            if n == 0:
                texts.append("")
                continue
            hyps = self.decoder(emissions[i : i + 1, :n].contiguous())[0]
            texts.append(" ".join(hyps[0].words) if hyps else "")
        return texts


DECODERS = ("greedy", "beam", "lexicon")


def check_decoder_files(
    decoder: str, kenlm_model_path: str | None = None, lexicon: str | None = None
) -> None:
    """Fail early, in one line, when a decoder's LM or lexicon is missing.

    Raises :class:`speechbrain_wsm.errors.ConfigError` (a
    ``ValueError``, printed as one ``error:`` line by the command-line tools)
    naming the option and the file: ``lexicon`` needs both files, ``beam``
    the LM when one is given.

    Example
    -------
    >>> check_decoder_files("greedy")
    >>> check_decoder_files("lexicon", "missing.arpa", "lexicon.txt")
    Traceback (most recent call last):
     ...
    speechbrain_wsm.errors.ConfigError: kenlm_model_path 'missing.arpa' not found (--kenlm); ...
    """
    if decoder not in DECODERS:
        raise ConfigError(f"decoder must be one of {DECODERS}, got {decoder!r}")
    needed = []
    if decoder == "lexicon":
        needed = [
            (
                "kenlm",
                "kenlm_model_path",
                kenlm_model_path,
                "an n-gram LM (.arpa or .bin)",
            )
        ]
        needed.append(("lexicon", "lexicon", lexicon, "a lexicon file"))
    elif decoder == "beam" and kenlm_model_path:
        needed = [("kenlm", "kenlm_model_path", kenlm_model_path, "")]
    for flag, key, path, what in needed:
        if not path:
            raise ConfigError(
                f"--decoder {decoder} needs --{flag} (the recipe key {key}): "
                f"{what}, as python -m speechbrain_wsm.data.lm writes"
            )
        if not os.path.isfile(path):
            raise ConfigError(
                f"{key} '{path}' not found (--{flag}); build one with "
                "python -m speechbrain_wsm.data.lm"
            )


def build_decoder(
    tokenizer,
    decoder: str = "greedy",
    beam_size: int = 20,
    kenlm_model_path: str | None = None,
    lm_weight: float = 0.5,
    word_bonus: float = 1.0,
    lexicon: str | None = None,
) -> Callable:
    """A function ``(log_probs [B, T, V], rel_lengths [B]) -> list of texts``.

    Arguments
    ---------
    tokenizer : CharTokenizer or SentencePieceTokenizer
        The units (blank at 0).
    decoder : str
        ``"greedy"`` (best unit per frame), ``"beam"`` (CTC prefix beam
        search, with a KenLM n-gram when ``kenlm_model_path`` is given) or
        ``"lexicon"`` (lexicon-constrained beam search with the KenLM n-gram
        ``kenlm_model_path``; needs ``lexicon``).
    beam_size, kenlm_model_path, lm_weight, word_bonus
        See :class:`speechbrain_wsm.decoding.CTCBeamDecoder`.
    lexicon : str, optional
        The lexicon of ``"lexicon"`` (:class:`CTCLexiconDecoder`).

    Example
    -------
    >>> from speechbrain_wsm.data.tokenizers import CharTokenizer
    >>> tok = CharTokenizer.from_texts(["AB"])
    >>> lp = torch.full((1, 3, len(tok)), -9.0)
    >>> for t, u in enumerate(tok.encode("A B")):
    ...     lp[0, t, u] = 0.0
    >>> build_decoder(tok)(lp, torch.ones(1)), build_decoder(tok, "beam", 4)(lp)
    (['A B'], ['A B'])
    """
    if decoder not in DECODERS:
        raise ValueError(f"decoder must be one of {DECODERS}, got {decoder!r}")
    check_decoder_files(decoder, kenlm_model_path, lexicon)
    # A model may have more outputs than the tokenizer has units (a fixed
    # output layer); those never decode.
    units = len(tokenizer)
    if decoder == "lexicon":
        return CTCLexiconDecoder(
            tokenizer,
            kenlm_model_path,
            lexicon,
            beam_size=beam_size,
            lm_weight=lm_weight,
            word_bonus=word_bonus,
        )
    if decoder == "beam":
        beam = CTCBeamDecoder(
            tokenizer,
            beam_size=beam_size,
            kenlm_model_path=kenlm_model_path,
            lm_weight=lm_weight,
            word_bonus=word_bonus,
        )
        return lambda log_probs, lens=None: beam(log_probs[..., :units], lens)

    def greedy(log_probs, lens=None):
        best = ctc_greedy_decode(log_probs[..., :units], lens, blank=0)
        return [" ".join(tokenizer.decode(u).split()) for u in best]

    return greedy
