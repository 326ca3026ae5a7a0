"""Bad inputs end well (issue 24): a clear ``error:`` line, a counted skip, or
the right result. Unit-level cases; the runs of ``train.py`` are in
``tests/recipes/test_bad_inputs.py``."""

import logging

from recipe_helpers import load_tiny_pretraining


def _streaming_encoder(hp):
    return next(m for m in hp["wav2vec2"].modules() if hasattr(m, "layer_reach"))


def test_contexts_longer_than_max_duration_are_capped(tmp_path, caplog):
    # item 4: 10^5-10^6 frames of context asked for 160 GB
    with caplog.at_level(logging.INFO):
        hp, *_ = load_tiny_pretraining(
            tmp_path, "streaming_sa", "--left_context=1000000", "--right_context=100000"
        )
    encoder = _streaming_encoder(hp)
    frames = round(hp["max_duration"] / 0.02)
    assert (encoder.left_context, encoder.right_context) == (frames, frames)
    assert "left_context=1000000 frames is longer than max_duration" in caplog.text
    assert f"capped to {frames}" in caplog.text
    hp, *_ = load_tiny_pretraining(tmp_path, "streaming_sa", "--left_context=16")
    assert _streaming_encoder(hp).left_context == 16  # a usual value is kept
