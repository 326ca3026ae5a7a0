"""The wav2vec 2.0 targets and objective: Gumbel quantiser, negatives, contrastive + diversity loss."""

from __future__ import annotations

import torch
from speechbrain.nnet.quantisers import GumbelVectorQuantizer
from torch import nn


class GumbelQuantiser(GumbelVectorQuantizer):
    """SpeechBrain's Gumbel-softmax quantiser, selecting codewords by a product.

    The same parameters (state dicts load either way), outputs, statistics
    and random draws as :class:`GumbelVectorQuantizer`; only the codeword
    lookup differs: a ``[frames, groups, codes] x [groups, codes, dim]``
    product, where SpeechBrain multiplies the one-hot choice into a
    ``[frames, groups * codes, dim]`` tensor (1.3 GB in float32 for 4k masked
    frames and 2 x 320 codes of 128 dimensions, and as much again in
    backward). Pass it as ``W2VTargetQuantiser(..., quantiser=GumbelQuantiser)``.

    Example
    -------
    >>> q = GumbelQuantiser(16, 10, (2.0, 0.25, 0.999995), 2, 8)
    >>> out = q(torch.randn(2, 5, 16))
    >>> out["x"].shape, out["num_vars"]
    (torch.Size([2, 5, 8]), 20)
    """

    def forward(self, x):
        """``x`` ``[batch, frame, input_dim]`` -> dict with quantised ``x``
        ``[batch, frame, vq_dim]``, ``code_perplexity``, ``prob_perplex``,
        ``num_vars``, ``temp``."""
        B, T, _ = x.shape
        logits = self.weight_proj(x.reshape(B * T, -1))
        logits = logits.view(B * T, self.groups, self.num_vars)
        hard = nn.functional.one_hot(logits.argmax(-1), self.num_vars)
        hard_probs = hard.float().mean(0)
        soft_probs = torch.softmax(logits.float(), dim=-1).mean(0)
        if self.training:
            choice = nn.functional.gumbel_softmax(
                logits.float(), tau=self.curr_temp, hard=True
            ).type_as(logits)
        else:
            choice = hard.to(logits.dtype)
        codebook = self.vars.view(self.groups, self.num_vars, -1)
        codes = torch.einsum("ngv,gvd->ngd", choice, codebook.to(choice.dtype))
        return {
            "x": codes.reshape(B, T, -1),
            "code_perplexity": _perplexity(hard_probs),
            "prob_perplex": _perplexity(soft_probs),
            "num_vars": self.num_vars * self.groups,
            "temp": self.curr_temp,
        }


def _perplexity(probs: torch.Tensor) -> torch.Tensor:
    """Sum over groups of ``exp(entropy)`` of ``[groups, codes]`` probabilities."""
    return torch.exp(-torch.sum(probs * torch.log(probs + 1e-7), dim=-1)).sum()


def sample_negative_indices(
    batch: int, frames: int, num_negatives: int, device=None
) -> torch.Tensor:
    """Indices of negatives: for each frame, ``num_negatives`` other frames.

    Uniform over the ``frames - 1`` other frames of the same utterance (with
    replacement), as SpeechBrain's and fairseq's samplers draw them.

    Returns
    -------
    torch.Tensor
        ``[batch, frames, num_negatives]`` long, never equal to the frame's
        own index.

    Example
    -------
    >>> idx = sample_negative_indices(2, 5, 3)
    >>> idx.shape, bool((idx == torch.arange(5)[None, :, None]).any())
    (torch.Size([2, 5, 3]), False)
    """
    if frames < 2:
        raise ValueError(f"negatives need at least 2 frames, got {frames}")
    own = torch.arange(frames, device=device).view(1, frames, 1)
    idx = torch.randint(0, frames - 1, (batch, frames, num_negatives), device=device)
    return idx + (idx >= own).long()


def gathered_cosines(
    x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor, chunk: int = 4096
) -> torch.Tensor:
    """``out[b, t, k] = <x[b, t], y[b, idx[b, t, k]]>``, in memory linear in frames.

    Frames are scored ``chunk`` at a time; under autograd each chunk's
    gathered rows ``[batch, chunk, negatives, dim]`` are recomputed in
    backward (activation checkpointing) instead of kept, so the memory is
    that of the inputs and the ``[batch, frames, negatives]`` output plus one
    chunk's rows.

    Arguments
    ---------
    x, y : torch.Tensor
        ``[batch, frames, dim]``.
    idx : torch.Tensor
        ``[batch, frames, negatives]`` long, indices into ``y``'s frames.
    chunk : int
        Frames per chunk.

    Returns
    -------
    torch.Tensor
        ``[batch, frames, negatives]``.

    Example
    -------
    >>> x, y = torch.randn(2, 6, 4), torch.randn(2, 6, 4)
    >>> idx = sample_negative_indices(2, 6, 3)
    >>> full = torch.bmm(x, y.transpose(1, 2)).gather(2, idx)
    >>> torch.allclose(gathered_cosines(x, y, idx, chunk=4), full, atol=1e-6)
    True
    """
    from torch.utils.checkpoint import checkpoint

    B, T, D = y.shape
    K = idx.shape[-1]

    def score(x_part, y_all, idx_part):
        rows = y_all.gather(1, idx_part.reshape(B, -1, 1).expand(-1, -1, D))
        return torch.einsum("bcd,bckd->bck", x_part, rows.view(B, -1, K, D))

    parts = []
    for start in range(0, T, max(1, int(chunk))):
        stop = start + chunk
        args = (x[:, start:stop], y, idx[:, start:stop])
        if torch.is_grad_enabled() and (x.requires_grad or y.requires_grad):
            parts.append(checkpoint(score, *args, use_reentrant=False))
        else:
            parts.append(score(*args))
    return torch.cat(parts, dim=1)


class Wav2Vec2Loss(nn.Module):
    """Contrastive (InfoNCE) loss against sampled negatives, plus diversity.

    For each masked frame, the prediction must pick its quantised target out
    of ``num_negatives`` targets of other masked frames of the same utterance;
    logits are cosine similarities divided by ``logit_temp``, and a negative
    identical to the target is left out (-inf), as in SpeechBrain's
    ``ContrastiveLoss`` and fairseq. The loss is the mean over masked frames
    of that cross-entropy plus ``diversity_weight`` times the codebook
    diversity loss: the recipe's objective, normalised per masked frame so
    that it does not depend on the batch size.

    Memory stays linear in the number of frames. Up to ``matrix_frames``
    masked frames per utterance, the cosines come from one ``[frames,
    frames]`` similarity matrix, from which the negatives are gathered
    (instead of materialising ``num_negatives`` copies of the targets: at 16 s
    per utterance, 100 negatives, 256 dimensions, the copies alone would take
    about 50 MB per utterance in float32, several times over in backward).
    Beyond that (a 40-minute file would need a 20 GB matrix), each frame's
    negatives are gathered and scored in chunks of frames, recomputed in
    backward rather than kept: the same loss, in memory proportional to the
    frames. Computed in float32 under autocast.

    Arguments
    ---------
    num_negatives : int
        Negatives per masked frame.
    logit_temp : float
        Temperature of the cosine logits.
    diversity_weight : float
        Weight of the diversity loss.
    matrix_frames : int
        Most masked frames per utterance scored through the ``[frames,
        frames]`` matrix (4096: 64 MB per utterance); longer ones are scored
        by chunks.

    Example
    -------
    >>> loss = Wav2Vec2Loss(num_negatives=5)
    >>> out = {"predictions": torch.randn(2, 10, 8), "targets": torch.randn(2, 10, 8),
    ...        "diversity_loss": torch.tensor(0.5)}
    >>> stats = loss(out)
    >>> sorted(stats)
    ['accuracy', 'contrastive_loss', 'diversity_loss', 'loss']
    """

    def __init__(
        self,
        num_negatives: int = 100,
        logit_temp: float = 0.1,
        diversity_weight: float = 0.1,
        matrix_frames: int = 4096,
    ):
        super().__init__()
        self.num_negatives = num_negatives
        self.logit_temp = logit_temp
        self.diversity_weight = diversity_weight
        self.matrix_frames = int(matrix_frames)

    def contrastive(self, predictions, targets, negative_idx):
        """Mean InfoNCE loss and accuracy for given negative indices.

        ``predictions``, ``targets``: ``[batch, frames, dim]``;
        ``negative_idx``: ``[batch, frames, negatives]`` (see
        :func:`sample_negative_indices`).
        """
        B, T, _ = targets.shape
        with torch.autocast(device_type=targets.device.type, enabled=False):
            x = nn.functional.normalize(predictions.float(), dim=-1, eps=1e-8)
            y = nn.functional.normalize(targets.float(), dim=-1, eps=1e-8)
            if T <= self.matrix_frames:
                cos = torch.bmm(x, y.transpose(1, 2))  # [B, T, T]: cos(x_t, y_j)
                positive = cos.diagonal(dim1=1, dim2=2).unsqueeze(-1)
                negative = cos.gather(2, negative_idx)
            else:  # linear in T: never a [T, T] matrix
                positive = (x * y).sum(-1, keepdim=True)
                # chunks of gathered rows within the matrix's memory budget
                K, D = negative_idx.shape[-1], y.shape[-1]
                chunk = max(1, self.matrix_frames**2 // (K * D))
                negative = gathered_cosines(x, y, negative_idx, chunk)
            # A negative equal to the target (the same code) is no negative.
            codes = torch.unique(
                targets.detach().reshape(B * T, -1), dim=0, return_inverse=True
            )[1].view(B, T)
            same = codes.gather(1, negative_idx.view(B, -1)).view_as(negative_idx)
            negative = negative.masked_fill(same == codes.unsqueeze(-1), float("-inf"))
            logits = torch.cat([positive, negative], dim=-1) / self.logit_temp
            logits = logits.view(B * T, -1)
            zeros = torch.zeros(B * T, dtype=torch.long, device=logits.device)
            loss = nn.functional.cross_entropy(logits, zeros)
            accuracy = (logits.argmax(-1) == 0).float().mean()
        return loss, accuracy

    def forward(self, outputs: dict) -> dict:
        """``outputs`` of :class:`Wav2Vec2Pretrainer` -> loss and statistics."""
        predictions, targets = outputs["predictions"], outputs["targets"]
        B, T, _ = targets.shape
        idx = sample_negative_indices(B, T, self.num_negatives, targets.device)
        contrastive, accuracy = self.contrastive(predictions, targets, idx)
        diversity = outputs["diversity_loss"]
        return {
            "loss": contrastive + self.diversity_weight * diversity,
            "contrastive_loss": contrastive,
            "diversity_loss": diversity,
            "accuracy": accuracy,
        }
