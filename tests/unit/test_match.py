"""consumers.stages.match: candidates (LSH) and verification (estimated Jaccard / containment)."""

from __future__ import annotations

import numpy as np
import pytest

from consumers.stages.fingerprint import Fingerprint, FingerprintConfig, fingerprint
from consumers.stages.match import CandidateIndex, MatchConfig, Similarity, compare, verify
from consumers.stages.normalise import normalise_text
from tests.unit.invented_news import DEPOT, FERRY, TURTLES

FP = FingerprintConfig()
# Explicit values: these tests pin the rule's semantics, not the tuned defaults.
MATCH = MatchConfig(jaccard_threshold=0.5, containment_threshold=0.8, min_shingles=20, min_size_ratio=0.0)


def fp_of(paragraphs: list[str]) -> Fingerprint:
    return fingerprint(normalise_text(" ".join(paragraphs)), FP)


def similarity(a: Fingerprint, b: Fingerprint) -> Similarity:
    return compare(a.shingle_hashes, b.shingle_hashes)


# -- verify --------------------------------------------------------------------------------------

def test_verify_accepts_by_jaccard() -> None:
    assert verify(Similarity(jaccard=0.55, containment=0.6), 100, 120, MATCH)
    assert verify(Similarity(jaccard=0.5, containment=0.0), 20, 20, MATCH)  # threshold inclusive


def test_verify_rejects_below_both_thresholds() -> None:
    assert not verify(Similarity(jaccard=0.49, containment=0.79), 100, 120, MATCH)


def test_verify_accepts_by_containment_when_texts_are_long_enough() -> None:
    assert verify(Similarity(jaccard=0.3, containment=0.85), 40, 200, MATCH)
    assert verify(Similarity(jaccard=0.3, containment=0.8), 20, 200, MATCH)  # both bounds inclusive


def test_verify_rejects_containment_when_the_smaller_text_is_a_sliver_of_the_larger() -> None:
    # A short item inside a live page or a digest is contained in it, but is no copy of it.
    live_page_rule = MatchConfig(jaccard_threshold=0.5, containment_threshold=0.8, min_size_ratio=0.15)
    assert not verify(Similarity(jaccard=0.1, containment=1.0), 100, 1000, live_page_rule)
    assert verify(Similarity(jaccard=0.15, containment=1.0), 150, 1000, live_page_rule)  # bound inclusive


def test_verify_rejects_containment_on_short_texts() -> None:
    assert not verify(Similarity(jaccard=0.3, containment=0.95), 19, 200, MATCH)
    assert not verify(Similarity(jaccard=0.3, containment=0.95), 200, 12, MATCH)


def test_trimmed_copy_is_verified_by_containment() -> None:
    full, trimmed = fp_of(FERRY), fp_of(FERRY[:2])
    estimate = similarity(full, trimmed)
    assert estimate.jaccard < MATCH.jaccard_threshold  # Jaccard alone would miss it
    assert verify(estimate, full.num_shingles, trimmed.num_shingles, MATCH)


def test_shared_lead_sentence_alone_is_not_enough() -> None:
    # Two different stories that open with the same short sentence.
    lead = "Heavy rain closed several roads across the region on Tuesday."
    a = fingerprint(normalise_text(lead), FP)
    b = fingerprint(normalise_text(lead + " " + " ".join(DEPOT)), FP)
    estimate = similarity(a, b)
    assert estimate.containment > 0.8
    assert not verify(estimate, a.num_shingles, b.num_shingles, MATCH)


def test_unrelated_stories_are_not_verified() -> None:
    a, b = fp_of(FERRY), fp_of(TURTLES)
    assert not verify(similarity(a, b), a.num_shingles, b.num_shingles, MATCH)


# -- compare -------------------------------------------------------------------------------------

def test_compare_identical_sets() -> None:
    a = fp_of(DEPOT)
    assert similarity(a, a) == Similarity(1.0, 1.0)


def test_compare_with_an_empty_set_has_no_similarity() -> None:
    hashes = np.arange(10, dtype=np.uint32)
    assert compare(np.array([], dtype=np.uint32), hashes) == Similarity(0.0, 0.0)


def test_compare_counts_shared_hashes() -> None:
    # |A| = 6, |B| = 4, |A ∩ B| = 2: Jaccard 2/8, containment of the smaller 2/4.
    a = np.arange(6, dtype=np.uint32)
    b = np.array([0, 1, 9, 10], dtype=np.uint32)
    measured = compare(a, b)
    assert measured.jaccard == pytest.approx(0.25)
    assert measured.containment == pytest.approx(0.5)
    assert measured.score == pytest.approx(0.5)


# -- MatchConfig.check ---------------------------------------------------------------------------

def test_check_rejects_more_rows_than_permutations() -> None:
    with pytest.raises(ValueError, match=r"num_bands \* rows_per_band = 160 exceeds num_perm = 128"):
        MatchConfig(num_bands=20, rows_per_band=8).check(FingerprintConfig(num_perm=128))


def test_check_accepts_exactly_num_perm() -> None:
    MatchConfig(num_bands=16, rows_per_band=8).check(FingerprintConfig(num_perm=128))
    assert CandidateIndex(FingerprintConfig(num_perm=128), MatchConfig(num_bands=16, rows_per_band=8)).bands == (16, 8)


@pytest.mark.parametrize(("num_bands", "rows_per_band"), [(16, None), (None, 8)])
def test_check_requires_both_band_settings(num_bands: int | None, rows_per_band: int | None) -> None:
    with pytest.raises(ValueError, match="set both num_bands and rows_per_band, or neither"):
        MatchConfig(num_bands=num_bands, rows_per_band=rows_per_band).check(FP)


@pytest.mark.parametrize("name", ["lsh_threshold", "jaccard_threshold", "containment_threshold"])
@pytest.mark.parametrize("value", [0.0, -0.1, 1.5])
def test_check_rejects_thresholds_outside_the_unit_interval(name: str, value: float) -> None:
    with pytest.raises(ValueError, match=rf"{name}={value} must be in \(0, 1\]"):
        MatchConfig(**{name: value}).check(FP)


# -- CandidateIndex ------------------------------------------------------------------------------

@pytest.fixture
def index() -> CandidateIndex:
    index = CandidateIndex(FP, MATCH)
    for key, text in (("ferry", FERRY), ("depot", DEPOT)):
        fingerprinted = fp_of(text)
        index.insert(key, fingerprinted.signature, fingerprinted.shingle_hashes)
    return index


def test_index_finds_a_near_copy_and_not_an_unrelated_text(index: CandidateIndex) -> None:
    edited = [p.replace("Tuesday", "Tuesday morning").replace("frustration", "anger") for p in FERRY]
    assert index.find_candidates(fp_of(edited[:4]).signature) == ["ferry"]
    assert index.find_candidates(fp_of(TURTLES).signature) == []


def test_index_remove_forgets_a_key(index: CandidateIndex) -> None:
    assert len(index) == 2
    index.remove("ferry")
    assert len(index) == 1
    assert index.find_candidates(fp_of(FERRY).signature) == []


def test_index_bands_fit_num_perm(index: CandidateIndex) -> None:
    num_bands, rows_per_band = index.bands
    assert num_bands * rows_per_band <= FP.num_perm


@pytest.mark.parametrize(("config", "message"), [
    (MatchConfig(min_size_ratio=5.0), r"min_size_ratio=5.0 must be in \[0, 1\]"),
    (MatchConfig(min_shingles=-3), r"min_shingles=-3 must be at least 1"),
    (MatchConfig(num_bands=1, rows_per_band=4), r"num_bands=1: datasketch's LSH needs at least 2 bands"),
    (MatchConfig(false_negative_weight=0.0), r"false_negative_weight=0.0 must be in \(0, 1\]"),
])
def test_check_rejects_values_the_index_or_the_rule_cannot_use(config: MatchConfig, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        config.check(FingerprintConfig())


def test_short_texts_sharing_a_phrase_are_not_verified() -> None:
    a = fingerprint(normalise_text("Police said the fire started late on Tuesday night in the old mill."), FP)
    b = fingerprint(normalise_text("Police said the fire started late on Tuesday in the harbour."), FP)
    measured, defaults = similarity(a, b), MatchConfig()
    assert a.num_shingles < defaults.min_shingles
    assert measured.jaccard >= defaults.jaccard_threshold  # a large share of a few shingles...
    assert not verify(measured, a.num_shingles, b.num_shingles, defaults)  # ...is still no copy


def test_short_near_identical_texts_are_verified() -> None:
    text = "Police said the fire started late on Tuesday night in the old mill by the river."
    a, b = fingerprint(normalise_text(text), FP), fingerprint(normalise_text(text + " Updated"), FP)
    assert a.num_shingles < MATCH.min_shingles
    assert verify(similarity(a, b), a.num_shingles, b.num_shingles, MATCH)
