"""consumers.stages.fingerprint: shingles, content hash and MinHash signatures."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest

from consumers.stages import fingerprint as fp
from consumers.stages.fingerprint import (
    FingerprintConfig,
    array_from_bytes,
    array_to_bytes,
    content_hash,
    fingerprint,
    plain_shingle_hashes,
    shingle_hashes,
    shingles,
)
from consumers.stages.match import compare
from consumers.stages.normalise import normalise_text
from tests.unit.invented_news import DEPOT, FERRY

CONFIG = FingerprintConfig(num_perm=128, word_shingle_size=3)  # explicit: tests must not follow tuned defaults


def text_of(paragraphs: list[str]) -> str:
    return normalise_text(" ".join(paragraphs))


def signature_jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """MinHash's estimate of Jaccard: the share of equal positions (what LSH bands rely on)."""
    return float(np.mean(a == b))


def test_identical_texts_have_identical_fingerprints() -> None:
    a = fingerprint(text_of(FERRY), CONFIG)
    b = fingerprint(text_of(FERRY), CONFIG)
    assert a.content_hash == b.content_hash
    assert np.array_equal(a.signature, b.signature)
    assert a.num_shingles == b.num_shingles == len(shingles(text_of(FERRY), CONFIG))


def test_one_changed_word_changes_the_hash_but_barely_the_signature() -> None:
    a = fingerprint(text_of(FERRY), CONFIG)
    b = fingerprint(text_of(FERRY).replace("frustration", "anger"), CONFIG)
    assert a.content_hash != b.content_hash
    assert signature_jaccard(a.signature, b.signature) > 0.9
    assert compare(a.shingle_hashes, b.shingle_hashes).jaccard > 0.9


def test_signature_shape_and_type() -> None:
    fp = fingerprint(text_of(DEPOT), FingerprintConfig(num_perm=64))
    assert fp.signature.shape == (64,)
    assert fp.signature.dtype == np.uint32
    assert fp.content_hash == content_hash(text_of(DEPOT))
    assert len(fp.content_hash) == 64


def test_seed_changes_the_signature() -> None:
    a = fingerprint(text_of(DEPOT), FingerprintConfig(seed=1))
    b = fingerprint(text_of(DEPOT), FingerprintConfig(seed=2))
    assert not np.array_equal(a.signature, b.signature)


def test_word_shingles_are_word_trigrams() -> None:
    grams = shingles("the ferry sailed at dawn", CONFIG)
    assert grams == {b"the ferry sailed", b"ferry sailed at", b"sailed at dawn"}


def test_text_shorter_than_a_shingle_is_one_shingle() -> None:
    assert shingles("ferry sailed", CONFIG) == {b"ferry sailed"}


def test_punctuation_does_not_make_shingles_differ() -> None:
    assert shingles("ferry, sailed; at dawn!", CONFIG) == shingles("ferry sailed at dawn", CONFIG)


@pytest.mark.parametrize("text", [
    "渡轮公司星期二暂停了所有航班，因为检查人员在船体上发现了裂缝。",
    "フェリー会社は火曜日、船体に亀裂が見つかったため全便を運休した。",
    "บริษัทเรือข้ามฟากระงับการเดินเรือทั้งหมดในวันอังคาร",
], ids=["chinese", "japanese", "thai"])
def test_scripts_without_spaces_use_character_shingles(text: str) -> None:
    grams = shingles(normalise_text(text), CONFIG)
    chars = "".join(normalise_text(text).split())
    assert all(len(gram.decode("utf-8")) == CONFIG.char_shingle_size for gram in grams)
    assert grams == {chars[i:i + 4].encode("utf-8") for i in range(len(chars) - 3)}


def test_character_shingles_ignore_spaces() -> None:
    assert shingles("渡轮 公司 暂停", CONFIG) == shingles("渡轮公司暂停", CONFIG)


def test_latin_text_with_a_few_cjk_characters_keeps_word_shingles() -> None:
    grams = shingles(normalise_text("The ferry Morning Heron, known locally as 晨鹭, entered service in 2009."), CONFIG)
    assert b"the ferry morning" in grams


def test_signature_bytes_round_trip() -> None:
    signature = fingerprint(text_of(FERRY), CONFIG).signature
    data = array_to_bytes(signature)
    assert len(data) == 4 * CONFIG.num_perm
    again = array_from_bytes(data)
    assert again.dtype == np.uint32
    assert np.array_equal(again, signature)
    assert again.flags.writeable  # a copy, not a view of the bytes


def test_signature_bytes_are_little_endian() -> None:
    assert array_to_bytes(np.array([1, 0x01020304], dtype=np.uint32)) == b"\x01\x00\x00\x00\x04\x03\x02\x01"


@pytest.mark.parametrize("num_perm", [0, 8, 15])
def test_config_rejects_too_few_permutations(num_perm: int) -> None:
    with pytest.raises(ValueError, match=rf"num_perm={num_perm} is too small"):
        FingerprintConfig(num_perm=num_perm)


def test_config_rejects_empty_shingles() -> None:
    with pytest.raises(ValueError, match="shingle sizes must be at least 1"):
        FingerprintConfig(word_shingle_size=0)


def test_identity_names_every_parameter() -> None:
    identity = FingerprintConfig(num_perm=256, seed=7, word_shingle_size=5, char_shingle_size=3).identity
    assert identity == "mh1-affine32-unitmix2-p256-s7-w5-c3"
    assert FingerprintConfig().identity != FingerprintConfig(seed=2).identity


def _overlapping_texts(overlap: float, length: int = 400) -> tuple[str, str]:
    """Two texts of `length` distinct words sharing a contiguous run of round(overlap * length) words."""
    words = [f"word{i}" for i in range(2 * length)]
    random.Random(7).shuffle(words)
    shared = round(overlap * length)
    a = words[:length]
    b = words[length - shared: 2 * length - shared]
    return " ".join(a), " ".join(b)


@pytest.mark.parametrize("overlap", [i / 10 for i in range(11)])
def test_estimated_jaccard_tracks_true_jaccard(overlap: float) -> None:
    a, b = _overlapping_texts(overlap)
    grams_a, grams_b = shingles(a, CONFIG), shingles(b, CONFIG)
    true_jaccard = len(grams_a & grams_b) / len(grams_a | grams_b)
    fa, fb = fingerprint(a, CONFIG), fingerprint(b, CONFIG)
    assert signature_jaccard(fa.signature, fb.signature) == pytest.approx(true_jaccard, abs=0.15)
    assert compare(fa.shingle_hashes, fb.shingle_hashes).jaccard == pytest.approx(true_jaccard, abs=1e-9)


@pytest.mark.parametrize("kept", [0.3, 0.5, 0.8])
def test_containment_of_a_trimmed_copy_is_complete(kept: float) -> None:
    words = text_of(FERRY).split()
    trimmed = " ".join(words[: int(len(words) * kept)])
    full, part = fingerprint(text_of(FERRY), CONFIG), fingerprint(trimmed, CONFIG)
    measured = compare(full.shingle_hashes, part.shingle_hashes)
    assert measured.containment == 1.0
    assert measured.jaccard == pytest.approx(part.num_shingles / full.num_shingles)


def test_shingle_hashes_are_sorted_and_unique() -> None:
    hashes = fingerprint(text_of(FERRY), CONFIG).shingle_hashes
    assert hashes.dtype == np.uint32
    assert np.all(np.diff(hashes.astype(np.int64)) > 0)


def _fmix64(value: int) -> int:
    value ^= value >> 33
    value = value * 0xFF51AFD7ED558CCD % 2**64
    value ^= value >> 33
    value = value * 0xC4CEB9FE1A85EC53 % 2**64
    return value ^ value >> 33


def _word_hash(word: bytes) -> int:
    value = sum(byte * 0x9E3779B185EBCA87**i for i, byte in enumerate(word)) % 2**64
    return value ^ value >> 29


def test_a_word_shingle_hash_is_its_word_hashes_combined() -> None:
    """Written out with the constants, so that an edit to them cannot change stored hashes unnoticed."""
    combined = 0x165667B19E3779F9
    for word in (b"the", b"ferry", b"sailed"):
        combined = (combined * 0xC2B2AE3D27D4EB4F + _word_hash(word)) % 2**64
    assert shingle_hashes("the ferry sailed", CONFIG).tolist() == [_fmix64(combined) % 2**32]
    assert shingle_hashes("the ferry sailed", CONFIG).tolist() == [1322581970]


def test_a_million_distinct_words_get_distinct_word_hashes() -> None:
    """Short, similar words (all of one to four letters, then numbers) are where a polynomial hash
    could fail; a 64-bit hash gives no collision among a million of them."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = ["".join(chars) for length in range(1, 5) for chars in itertools.product(letters, repeat=length)]
    words += [str(number) for number in range(1_000_000, 1_525_000)]
    assert len(set(words)) == len(words) > 1_000_000
    units = fp._word_hashes(" ".join(words).encode())
    assert len(units) == len(words)
    assert len(np.unique(units)) == len(words)


def test_word_hashes_of_long_texts_use_their_own_powers() -> None:
    """Beyond the kept table of B**i the powers are made for the text: the same word hashes."""
    words = " ".join(f"w{i}" for i in range(20_000)).encode()
    assert len(words) > fp._POWERS_KEPT
    assert fp._word_hashes(words).tolist() == [fp._plain_word_hash(w) for w in words.split()]
    powers, inverses = fp._byte_powers(70_000)
    assert int(powers[69_999]) == pow(fp._BYTE_MULTIPLIER, 69_999, 2**64)
    assert int(powers[69_999]) * int(inverses[69_999]) % 2**64 == 1


def test_a_character_shingle_hash_is_its_mixed_code_points_combined() -> None:
    combined = 0x165667B19E3779F9
    for char in "渡轮公司":
        combined = (combined * 0xC2B2AE3D27D4EB4F + _fmix64(ord(char))) % 2**64
    assert shingle_hashes("渡轮公司", FingerprintConfig(char_shingle_size=4)).tolist() == [_fmix64(combined) % 2**32]


@pytest.mark.parametrize("text", [
    text_of(FERRY), "ferry", "ferry sailed", "the ferry sailed at dawn", "",
    normalise_text("渡轮公司星期二暂停了所有航班，因为检查人员在船体上发现了裂缝。"), "渡轮公",
    normalise_text("Zürich café £5 ½ ﬁnance naïve déjà-vu"),
], ids=["story", "one word", "two words", "five words", "empty", "chinese", "three characters", "accents"])
@pytest.mark.parametrize("size", [1, 3, 4])
def test_shingle_hashes_equal_their_plain_definition(text: str, size: int) -> None:
    config = FingerprintConfig(word_shingle_size=size, char_shingle_size=size)
    hashes = shingle_hashes(text, config)
    assert hashes.dtype == np.uint32
    assert hashes.tolist() == sorted(plain_shingle_hashes(text, config))
    assert len(hashes) == len(shingles(text, config))  # no two shingles of these texts share a hash


def test_word_order_changes_the_shingle_hash() -> None:
    config = FingerprintConfig(word_shingle_size=4)
    orders = ["a b c d", "d c b a", "b a c d", "a b d c", "a a b b", "b b a a", "a b a b", "b a b a"]
    assert len({shingle_hashes(text, config)[0] for text in orders}) == len(orders)


def test_a_short_text_shingle_differs_from_the_tail_of_a_longer_one() -> None:
    config = FingerprintConfig(word_shingle_size=4)
    assert shingle_hashes("ferry sailed dawn", config)[0] not in set(shingle_hashes("the ferry sailed dawn", config))
    assert shingle_hashes("ferry", config)[0] != shingle_hashes("ferry ferry", config)[0]


def _expected_collisions(count: int) -> float:
    """Pairs of distinct shingles sharing a hash, for an ideal 32-bit hash (birthday bound)."""
    return count * (count - 1) / 2 / 2**32


@pytest.mark.parametrize("kind", ["words", "short words", "characters"])
def test_distinct_shingles_share_a_hash_no_more_often_than_an_ideal_hash(kind: str) -> None:
    """300,000 distinct shingles: an ideal hash gives about 10 collisions (Poisson), well under 30."""
    rng = random.Random(5)
    if kind == "words":
        vocabulary = [f"w{i}" for i in range(3000)] + ["the", "a", "of"] * 500  # Zipf-like: a few frequent words
        text = " ".join(rng.choice(vocabulary) for _ in range(310_000))
    elif kind == "short words":  # words one letter apart: small byte differences everywhere
        vocabulary = [a + b for a in "abcdefgh" for b in "abcdefgh"]
        text = " ".join(rng.choice(vocabulary) for _ in range(310_000))
    else:
        text = "".join(chr(0x4E00 + rng.randrange(3000)) for _ in range(310_000))
    config = FingerprintConfig(word_shingle_size=4, char_shingle_size=4)
    distinct = len(shingles(text, config))
    assert distinct > 300_000
    collisions = distinct - len(shingle_hashes(text, config))
    assert collisions <= 3 * _expected_collisions(distinct)


def test_reversed_shingles_do_not_share_hashes() -> None:
    rng = random.Random(6)
    words = [f"w{rng.randrange(10**9)}" for _ in range(50_000)]
    config = FingerprintConfig(word_shingle_size=4)
    forward = shingle_hashes(" ".join(words), config)
    backward = shingle_hashes(" ".join(reversed(words)), config)
    assert len(np.intersect1d(forward, backward)) <= 3 * len(forward) ** 2 / 2**32 + 2
