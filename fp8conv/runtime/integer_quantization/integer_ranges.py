"""The integer range of each weight precision, and the type it is stored as.

Zero point 0 everywhere; ``(qmin, qmax)`` and why:

* ``bits=8``: [-127, 127]. Symmetric, so ``-w`` quantizes to ``-q`` (sign-flip equivariant), the same
  convention as onnxruntime's symmetric weights; -128 would add 1/256 of range on one side only.
* ``bits=7`` (or ``bits=8, narrow_bits=7``): [-63, 63], int8 storage. onnxruntime's u8×s8 kernels on x86
  without VNNI saturate their int16 pair sums with full-range weights; [-64, 63] is safe. Using -64 too
  (the asymmetric-range trick: flip each channel's sign so its larger side gets -64) would make the step
  only 64/63 finer (1.6 %), at the price of a sign convention every consumer must know; [-63, 63] needs none.
* ``bits=4``: [-8, 7] with the scale defined by 7 (``s = r max|w| / 7``): the grid is symmetric for
  ``|w| <= 7.5 s``, and the 16th level -8 is used for free whenever clipping (``r < 1``) leaves negative
  weights below ``-7.5 s``. At 4 bits that level is 1/16 of the grid, worth having; the MSE search uses it.
* ``narrow_bits=n`` (``n < bits``): [-(2^(n-1) - 1), 2^(n-1) - 1] in the storage type of ``bits``.
"""

from __future__ import annotations

from fp8conv.runtime.integer_types import INTEGER_TYPES, IntegerFormat

__all__ = ["weight_range", "weight_storage_type"]

_WEIGHT_STORAGE = {4: INTEGER_TYPES["int4"], 8: INTEGER_TYPES["int8"]}


def weight_storage_type(bits: int) -> IntegerFormat:
    """The integer type weights of ``bits`` storage bits are stored as: int4 (4) or int8 (8; 7-bit values too).

    Raises:
        ValueError: For another width.
    """
    if bits not in _WEIGHT_STORAGE:
        raise ValueError(f"integer weights are stored in 4 or 8 bits, got {bits!r}")
    return _WEIGHT_STORAGE[bits]


def weight_range(bits: int, narrow_bits: int | None = None) -> tuple[int, int, int]:
    """Storage width and integer range for a weight precision (see the module docstring for why).

    Args:
        bits: 8, 7 (7-bit values in int8 storage) or 4.
        narrow_bits: Optional narrower value range, ``2 <= narrow_bits <= bits``.

    Returns:
        ``(storage_bits, qmin, qmax)``.

    Raises:
        ValueError: For unsupported widths.
    """
    if bits not in (4, 7, 8) or isinstance(bits, bool):
        raise ValueError(f"bits must be 8, 7 (AVX2-safe int8) or 4, got {bits!r}")
    storage = weight_storage_type(4 if bits == 4 else 8)
    if narrow_bits is None or narrow_bits == bits:
        narrow_bits = bits
    elif isinstance(narrow_bits, bool) or not isinstance(narrow_bits, int) or not 2 <= narrow_bits <= bits:
        raise ValueError(f"narrow_bits must be an int in [2, {bits}] (or None), got {narrow_bits!r}")
    qmax = (1 << (narrow_bits - 1)) - 1  # the largest value of a signed narrow_bits integer
    qmin = storage.qmin if narrow_bits == storage.bits == 4 else -qmax  # int4 keeps its 16th level, -8
    return storage.bits, qmin, qmax
