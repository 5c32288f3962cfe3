"""Fingerprint: normalised text → exact content hash, shingles, and a MinHash signature.

Word n-gram shingles for scripts that separate words with spaces; character n-grams for
scripts that do not (Chinese, Japanese, Thai, Lao, Khmer, Burmese), where "words" would be
whole sentences.

A shingle's 32-bit hash is built from the 64-bit hashes of its units, never from its own bytes:
each word is hashed once (a polynomial of its bytes, all words of a text at once, see
``_word_hashes``), each character is its code point mixed by MurmurHash3's finaliser, and numpy
combines every n consecutive unit hashes at once (see ``_combine``). Joining and hashing every
n-gram cost twice as much: each word is in n shingles.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import AnyStr

import numpy as np
from datasketch import MinHash

from consumers.stages.normalise import non_ascii

SCHEME = "affine32"  # datasketch 2.x scheme; signatures from different schemes never compare
# How shingles are hashed, in the identity: "unitmix2" is unit hashes combined by _combine ("xxh32" was
# xxhash32 of each joined n-gram, "unitmix1" xxh3_64 word hashes); hashes from different schemes never compare.
SHINGLE_HASH = "unitmix2"
_WORD = re.compile(r"\w+", re.UNICODE)
# Word tokens are cut from UTF-8 bytes, several times faster than _WORD.findall and with no
# encode per shingle afterwards: non-ASCII characters that are not word characters ("£", "€")
# become spaces first, then one bytes.translate turns every ASCII non-word byte into a space and
# bytes.split cuts the tokens. The same tokens as _WORD: the UTF-8 bytes of non-ASCII characters
# are all >= 0x80, which the table leaves alone.
_NON_ASCII_NON_WORD = re.compile(r"[^\x00-\x7f\w]")
_ASCII_NON_WORD_TO_SPACE = bytes(
    byte if byte >= 0x80 or chr(byte).isalnum() or byte == ord("_") else ord(" ") for byte in range(256)
)
_NO_SPACE_SCRIPTS = re.compile(
    r"[\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]"
)


@dataclass(frozen=True, slots=True)
class FingerprintConfig:
    """Everything that decides a signature; signatures made under other values never compare."""

    num_perm: int = 128
    seed: int = 1
    word_shingle_size: int = 4
    char_shingle_size: int = 4

    def __post_init__(self) -> None:
        if self.num_perm < 16:
            raise ValueError(f"num_perm={self.num_perm} is too small for stable estimates; use at least 16")
        if self.word_shingle_size < 1 or self.char_shingle_size < 1:
            raise ValueError("shingle sizes must be at least 1")

    @property
    def identity(self) -> str:
        """A short string stored with every signature (datatrove's MinhashConfig.__str__ idea)."""
        return (f"mh1-{SCHEME}-{SHINGLE_HASH}-p{self.num_perm}-s{self.seed}"
                f"-w{self.word_shingle_size}-c{self.char_shingle_size}")


@dataclass(frozen=True, slots=True)
class Fingerprint:
    content_hash: str  # sha256 of the normalised text: equal hashes mean an exact copy
    signature: np.ndarray  # uint32[num_perm]: finds candidates through LSH
    shingle_hashes: np.ndarray  # sorted unique uint32 hashes of the shingles: verifies candidates exactly

    @property
    def num_shingles(self) -> int:
        return len(self.shingle_hashes)


def content_hash(normalised: str) -> str:
    return hashlib.sha256(normalised.encode("utf-8")).hexdigest()


def tokenise(normalised: str) -> list[str]:
    return _WORD.findall(normalised)


def shingles(normalised: str, config: FingerprintConfig) -> set[bytes]:
    """The shingle set of a normalised text (see the module docstring for the two kinds)."""
    return set(_grams(normalised, config))


def _grams(normalised: str, config: FingerprintConfig) -> Iterator[bytes]:
    """Every shingle of the text in order, repeats included (callers deduplicate)."""
    if _uses_characters(normalised):
        return map(str.encode, _ngrams(list("".join(normalised.split())), config.char_shingle_size, ""))
    return _ngrams(_word_tokens(normalised), config.word_shingle_size, b" ")


def _word_tokens(text: str) -> list[bytes]:
    """``tokenise(text)`` as UTF-8 bytes (see _NON_ASCII_NON_WORD for how)."""
    return _word_bytes(text).split()


def _word_bytes(text: str) -> bytes:
    """The text's UTF-8 with every non-word character a space: its words are what is between spaces."""
    data = text.encode("utf-8")
    if not text.isascii():
        # Only non-ASCII characters can be non-word characters the table misses: a few dozen to
        # check instead of running the regex over the whole text.
        others = _NON_ASCII_NON_WORD.findall(non_ascii(text, data))
        if others:
            for char in set(others):
                text = text.replace(char, " ")
            data = text.encode("utf-8")
    return data.translate(_ASCII_NON_WORD_TO_SPACE)


def _ngrams(tokens: list[AnyStr], n: int, separator: AnyStr) -> Iterator[AnyStr]:
    if len(tokens) <= n:
        return iter([separator.join(tokens)] if tokens else [])
    # zip over shifted slices joins each n-gram in C: no Python-level slicing per shingle.
    return map(separator.join, zip(*(tokens[i:] for i in range(n)), strict=False))


def fingerprint(normalised: str, config: FingerprintConfig) -> Fingerprint:
    hashes = shingle_hashes(normalised, config)
    return Fingerprint(content_hash(normalised), minhash_signature(hashes, config), hashes)


def shingle_hashes(normalised: str, config: FingerprintConfig) -> np.ndarray:
    """The 32-bit hashes of the text's shingles, sorted and unique.

    Two distinct shingles share a hash about once in 4e9 pairs, as with any good 32-bit hash;
    ``plain_shingle_hashes`` computes the same values one shingle at a time.
    """
    if _uses_characters(normalised):
        units = _char_hashes("".join(normalised.split()))
        n = config.char_shingle_size
    else:
        units = _word_hashes(_word_bytes(normalised))
        n = config.word_shingle_size
    hashes = _combine(units, n)
    hashes.sort()
    # Unique by comparing neighbours: np.unique (numpy 2) builds a hash table first, and costs 5x more here.
    distinct = np.empty(len(hashes), dtype=bool)
    distinct[:1] = True
    np.not_equal(hashes[1:], hashes[:-1], out=distinct[1:])
    return hashes[distinct]


# _combine's constants (xxhash64's primes). The multiplier is odd (invertible mod 2**64), so two
# shingles that differ in one unit never share a combined value; it is 3 mod 4, so "a b" and "b a"
# share one only when a and b agree on 63 bits (multiplier - 1 has a single factor 2). The start value
# keeps a shingle of fewer units than n (a text shorter than one shingle) apart from the tail of a
# longer one.
_COMBINE_MULTIPLIER = 0xC2B2AE3D27D4EB4F
_COMBINE_START = 0x165667B19E3779F9
_MASK64 = 2**64 - 1


def _combine(units: np.ndarray, n: int) -> np.ndarray:
    """Hash each run of n consecutive unit hashes (all of them when fewer) to 32 bits: a new array.

    Per run, ``h = start; for u in run: h = h * multiplier + u (mod 2**64)``, then MurmurHash3's
    64-bit finaliser, whose low 32 bits are the shingle's hash. The polynomial keeps order ("a b c
    d" is not "d c b a"); it runs on 64 bits because a sum that runs on 32 bits lets every collision
    of two word pairs ("a b", "x y") become one of each shingle they begin or end alike ("a b c d",
    "x y c d"), about twice the collisions of an ideal hash. Vectorised over the runs: n
    multiply-adds of shifted slices, whatever the number of shingles.
    """
    width = min(n, len(units))
    if not width:
        return np.empty(0, dtype=np.uint32)
    count = len(units) - width + 1
    combined = units[:count] + np.uint64(_COMBINE_START * _COMBINE_MULTIPLIER & _MASK64)
    for offset in range(1, width):
        combined *= np.uint64(_COMBINE_MULTIPLIER)
        combined += units[offset:offset + count]
    return _fmix64_in_place(combined).astype(np.uint32)


def _word_hashes(words: bytes) -> np.ndarray:
    """Each word's unit hash, for all words at once: a polynomial of its bytes, then a xorshift.

    Per word, ``h = sum(byte * B**i for i, byte in enumerate(word)) mod 2**64`` and ``h ^ h >> 29``
    (the xorshift makes the shingle hash no linear function of the bytes, which structured texts
    could meet). All words from one prefix sum over the text: ``(P[end] - P[start]) * B**-start``,
    where ``P[i] = sum(byte[j] * B**j for j < i)``. Three times cheaper than a bytes object and an
    xxhash call per word. Two distinct words share a hash only when B is a root mod 2**64 of the
    polynomial of their byte differences, which for words of natural length is as rare as a
    collision of a 64-bit hash (a unit test runs a million distinct words).
    """
    data = np.frombuffer(words, dtype=np.uint8)
    is_word = np.zeros(len(data) + 2, dtype=bool)
    np.not_equal(data, ord(" "), out=is_word[1:-1])
    edges = np.flatnonzero(is_word[1:] != is_word[:-1])  # word starts and ends, alternately
    starts, ends = edges[0::2], edges[1::2]
    powers, inverses = _byte_powers(len(data))
    prefix = np.zeros(len(data) + 1, dtype=np.uint64)
    np.cumsum(data * powers, out=prefix[1:])
    units = prefix[ends]
    units -= prefix[starts]
    units *= inverses[starts]
    units ^= units >> np.uint64(29)
    return units


# B for _word_hashes: xxhash64's first prime, odd (so B**-1 mod 2**64 exists) and 3 mod 4 (so two
# words that differ by swapping neighbouring bytes never share a hash).
_BYTE_MULTIPLIER = 0x9E3779B185EBCA87
_POWERS_KEPT = 1 << 16  # texts up to 64 KB share tables of B**i and B**-i (512 KB each); longer ones make theirs


def _byte_powers(count: int) -> tuple[np.ndarray, np.ndarray]:
    """``B**i`` and ``B**-i`` mod 2**64 for i < count."""
    if count <= _POWERS_KEPT:
        powers, inverses = _kept_byte_powers()
        return powers[:count], inverses[:count]
    return _make_byte_powers(count)


@functools.cache
def _kept_byte_powers() -> tuple[np.ndarray, np.ndarray]:
    powers, inverses = _make_byte_powers(_POWERS_KEPT)
    powers.flags.writeable = inverses.flags.writeable = False  # shared by every call
    return powers, inverses


def _make_byte_powers(count: int) -> tuple[np.ndarray, np.ndarray]:
    tables = []
    for base in (_BYTE_MULTIPLIER, pow(_BYTE_MULTIPLIER, -1, 2**64)):
        table = np.ones(count, dtype=np.uint64)
        np.cumprod(np.full(count - 1, base, dtype=np.uint64), out=table[1:])  # uint64 wraps: mod 2**64
        tables.append(table)
    return tables[0], tables[1]


def _char_hashes(chars: str) -> np.ndarray:
    """Each character's unit hash: its code point through MurmurHash3's 64-bit finaliser (one-to-one)."""
    return _fmix64_in_place(np.frombuffer(chars.encode("utf-32-le"), dtype="<u4").astype(np.uint64))


def _fmix64_in_place(values: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser on a uint64 array, in place (a bijection: no two values meet)."""
    values ^= values >> np.uint64(33)
    values *= np.uint64(0xFF51AFD7ED558CCD)
    values ^= values >> np.uint64(33)
    values *= np.uint64(0xC4CEB9FE1A85EC53)
    values ^= values >> np.uint64(33)
    return values


def plain_shingle_hashes(normalised: str, config: FingerprintConfig) -> set[int]:
    """``shingle_hashes`` one shingle at a time in plain Python: its definition, slow, for tests."""
    characters = _uses_characters(normalised)
    found = set()
    for gram in _grams(normalised, config):
        if characters:
            units = [_fmix64_int(ord(char)) for char in gram.decode("utf-8")]
        else:
            units = [_plain_word_hash(word) for word in gram.split(b" ")]
        combined = _COMBINE_START
        for unit in units:
            combined = (combined * _COMBINE_MULTIPLIER + unit) & _MASK64
        found.add(_fmix64_int(combined) & 0xFFFFFFFF)
    return found


def _plain_word_hash(word: bytes) -> int:
    value = sum(byte * pow(_BYTE_MULTIPLIER, i, 2**64) for i, byte in enumerate(word)) & _MASK64
    return value ^ value >> 29


def _fmix64_int(value: int) -> int:
    value ^= value >> 33
    value = value * 0xFF51AFD7ED558CCD & _MASK64
    value ^= value >> 33
    value = value * 0xC4CEB9FE1A85EC53 & _MASK64
    return value ^ value >> 33


def minhash_signature(hashes: np.ndarray, config: FingerprintConfig) -> np.ndarray:
    """datasketch's affine32 MinHash of the shingle hashes, computed on the array itself.

    The same values as ``MinHash(num_perm, seed, scheme="affine32").update_batch(hashes)`` (a unit
    test holds it to that), without the MinHash object, ``tolist()`` and an ``int()`` per shingle:
    each hash is pre-mixed with MurmurHash3's 32-bit finaliser, then permuted by every
    ``a * h + b mod 2**32`` (uint32 arithmetic wraps), and each permutation keeps its minimum.
    """
    a, b = _permutations(config)
    if not len(hashes):
        return np.full(config.num_perm, _MAX_HASH, dtype=np.uint32)
    permuted = np.multiply.outer(a, _fmix32_in_place(hashes.astype(np.uint32)))  # each row's minimum is one value
    permuted += b[:, np.newaxis]
    return permuted.min(axis=1)


_MAX_HASH = np.iinfo(np.uint32).max


def _fmix32_in_place(hashes: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finaliser (datasketch.minhash._fmix for width 32) on a uint32 array, in place."""
    hashes ^= hashes >> np.uint32(16)
    hashes *= np.uint32(0x85EBCA6B)
    hashes ^= hashes >> np.uint32(13)
    hashes *= np.uint32(0xC2B2AE35)
    hashes ^= hashes >> np.uint32(16)
    return hashes


@functools.lru_cache(maxsize=8)
def _permutations(config: FingerprintConfig) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's permutation parameters (a, b) for this config, drawn once."""
    a, b = (values.astype(np.uint32) for values in
            MinHash(num_perm=config.num_perm, seed=config.seed, hashfunc=int, scheme=SCHEME).permutations)
    a.flags.writeable = b.flags.writeable = False  # shared by every call through the cache
    return a, b


def array_to_bytes(values: np.ndarray) -> bytes:
    """A uint32 array (signature or shingle hashes) as little-endian bytes, for the wire and the database."""
    return values.astype("<u4", copy=False).tobytes()


def array_from_bytes(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<u4").astype(np.uint32)


def _uses_characters(text: str) -> bool:
    """Character shingles when a fair share of the letters come from a script without spaces."""
    if text.isascii():
        return False
    sample = text[:2000]
    # Counted among the sample's non-ASCII characters alone: in text with a few accents or a pound
    # sign, a few characters to search instead of 2,000.
    hits = len(_NO_SPACE_SCRIPTS.findall(non_ascii(sample)))
    return hits > 0 and hits * 3 >= sum(1 for ch in sample if ch.isalpha())
