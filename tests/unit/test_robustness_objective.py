"""The contrastive loss keeps its memory linear in the frames (issue 12, item 9)."""

import torch

from speechbrain_wsm.models.wav2vec2 import Wav2Vec2Loss
from speechbrain_wsm.models.wav2vec2.objective import sample_negative_indices


def _inputs(frames, dim=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    pred = torch.randn(1, frames, dim, generator=g).requires_grad_()
    codes = torch.randn(40, dim, generator=g)  # targets repeat, as quantised ones do
    target = codes[torch.randint(0, 40, (frames,), generator=g)][None].requires_grad_()
    return pred, target


def test_chunked_scoring_equals_the_matrix():
    pred, target = _inputs(300)
    idx = sample_negative_indices(1, 300, 10)
    matrix = Wav2Vec2Loss(num_negatives=10)  # 300 <= 4096: the [T, T] matrix
    chunked = Wav2Vec2Loss(num_negatives=10, matrix_frames=32)
    a, acc_a = matrix.contrastive(pred, target, idx)
    ga = torch.autograd.grad(a, (pred, target))
    b, acc_b = chunked.contrastive(pred, target, idx)
    gb = torch.autograd.grad(b, (pred, target))
    assert torch.allclose(a, b, atol=1e-5) and acc_a == acc_b
    assert all(torch.allclose(x, y, atol=1e-6) for x, y in zip(ga, gb))


def test_no_frames_by_frames_tensor_for_long_utterances(largest_tensor):
    frames = 1200
    pred, target = _inputs(frames)
    loss_fn = Wav2Vec2Loss(num_negatives=10, matrix_frames=64)
    idx = sample_negative_indices(1, frames, 10)
    with largest_tensor() as seen:
        loss, _ = loss_fn.contrastive(pred, target, idx)
        loss.backward()
    assert torch.isfinite(loss)
    assert seen.largest < frames * frames / 20  # linear: [T, K], [T, D], chunks
