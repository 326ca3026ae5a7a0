"""CTC decoding: greedy, and prefix beam search with an optional n-gram LM.

Both decode frame-level log-probabilities ``[batch, frame, unit]`` whose unit
0 is the CTC blank (the convention of :mod:`speechbrain_wsm.data.tokenizers`).
Lengths are relative (``wav_lens`` in ``[0, 1]``, SpeechBrain's convention at
Brain level), as the recipes have them.

:func:`build_decoder` turns a recipe's decoder options into one function
``(log_probs, lengths) -> texts``. The beam search is SpeechBrain's ``CTCPrefixBeamSearcher``; with a KenLM model
(``.arpa`` or ``.bin``, needs the ``kenlm`` Python package) it does shallow
fusion with word-level n-gram scores.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from speechbrain.decoders.ctc import CTCPrefixBeamSearcher

__all__ = [
    "DECODERS",
    "CTCBeamDecoder",
    "build_decoder",
    "ctc_greedy_decode",
    "frame_lengths",
    "vocabulary",
]


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


DECODERS = ("greedy", "beam")


def build_decoder(
    tokenizer,
    decoder: str = "greedy",
    beam_size: int = 20,
    kenlm_model_path: str | None = None,
    lm_weight: float = 0.5,
    word_bonus: float = 1.0,
) -> Callable:
    """A function ``(log_probs [B, T, V], rel_lengths [B]) -> list of texts``.

    Arguments
    ---------
    tokenizer : CharTokenizer or SentencePieceTokenizer
        The units (blank at 0).
    decoder : str
        ``"greedy"`` (best unit per frame) or ``"beam"`` (CTC prefix beam
        search, with a KenLM n-gram when ``kenlm_model_path`` is given).
    beam_size, kenlm_model_path, lm_weight, word_bonus
        See :class:`speechbrain_wsm.decoding.CTCBeamDecoder`.

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
    # A model may have more outputs than the tokenizer has units (a fixed
    # output layer); those never decode.
    units = len(tokenizer)
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
