"""Finding the self-attention layers of an SSL model (the surgery's map)."""

from __future__ import annotations

from collections.abc import Iterable

from speechbrain_wsm.errors import UserValueError

__all__ = ["resolve_indices", "resolve_layers"]


def resolve_indices(
    indices: Iterable[int], count: int, what: str = "layer"
) -> list[int]:
    """Indices into ``count`` items as sorted, distinct non-negative ints.

    Negative indices count from the end (``-1`` is the last item). The one
    check of every index list that names parts of an encoder: layers
    (:func:`resolve_layers`) and hidden states (fusion taps).

    Arguments
    ---------
    indices : iterable of int
        The indices given.
    count : int
        How many items there are.
    what : str
        What an item is, for the error messages (``"layer"``,
        ``"hidden state"``).

    Returns
    -------
    list of int

    Raises
    ------
    ValueError
        On a non-int index, one out of range, no index at all, or one item
        named twice.

    Example
    -------
    >>> resolve_indices([-1, 4], 13, "hidden state")
    [4, 12]
    >>> resolve_indices([13], 13, "hidden state")
    Traceback (most recent call last):
    ...
    speechbrain_wsm.errors.UserValueError: hidden state index 13 out of range: the encoder has 13 hidden states (-13 to 12)
    """
    indices = list(indices)
    out = []
    for i in indices:
        if isinstance(i, bool) or not isinstance(i, int):
            raise UserValueError(f"{what} indices must be ints, got {i!r}")
        if not -count <= i < count:
            raise UserValueError(
                f"{what} index {i} out of range: the encoder has {count} {what}s "
                f"({-count} to {count - 1})"
            )
        out.append(i % count)
    if not out:
        raise UserValueError(f"no {what} to operate on: pass at least one index")
    if len(set(out)) != len(out):
        raise UserValueError(f"{what} indices {indices} name a {what} twice")
    return sorted(out)


def resolve_layers(layers: int | Iterable[int], num_layers: int) -> list[int]:
    """Layer indices as sorted non-negative ints; negative ones count from the top.

    Arguments
    ---------
    layers : int or iterable of int
        Layer indices (``-1`` is the top layer).
    num_layers : int
        Number of layers of the encoder.

    Returns
    -------
    list of int

    Example
    -------
    >>> resolve_layers([-1, -2], 12)
    [10, 11]
    >>> resolve_layers([0, 12], 12)
    Traceback (most recent call last):
    ...
    speechbrain_wsm.errors.UserValueError: layer index 12 out of range: the encoder has 12 layers (-12 to 11)
    """
    if isinstance(layers, int):
        layers = [layers]
    return resolve_indices(layers, num_layers, "layer")
