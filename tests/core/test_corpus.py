"""Tests for analysis.corpus (offline sample library). Fast: no network, no model."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest

from analysis import corpus
from analysis.corpus import CorpusError, Sample, SampleLibrary, SampleNotFound, sources

HAS_BIBLE = shutil.which("bible") is not None
HAS_JARGON = corpus.JARGON_PATH.is_file()
HAS_FORTUNES = any((corpus.FORTUNES_DIR / name).is_file() for name in corpus.FORTUNE_FILES)


@pytest.fixture(scope="module")
def lib() -> SampleLibrary:
    return SampleLibrary()


# -- ids, sources, get ------------------------------------------------------------------------


def test_ids_unique_and_stable_across_instances(lib: SampleLibrary) -> None:
    first = lib.list()
    second = SampleLibrary().list()
    ids = [s.sample_id for s in first]
    assert len(ids) == len(set(ids))
    assert ids == [s.sample_id for s in second]
    assert [s.text for s in first] == [s.text for s in second]
    assert "prose/assert" in ids
    assert "code/json.decoder#0" in ids


def test_every_present_source_has_valid_samples(lib: SampleLibrary) -> None:
    groups = lib.sources()
    assert {"prose", "code"} <= set(groups)
    assert set(groups) <= set(corpus.SOURCES)
    assert "user" not in groups and "hf" not in groups and "files" not in groups
    for source, samples in groups.items():
        assert len(samples) > 0, source
        for s in samples:
            assert isinstance(s, Sample)
            assert s.source == source
            assert s.sample_id.startswith(f"{source}/")
            assert s.title.strip()
            assert s.text.strip()
            assert len(s.text) <= lib.max_chars
    assert len(groups["prose"]) > 50
    assert len(groups["code"]) > 100
    assert lib.list("prose") == groups["prose"]
    assert lib.list("files") == []


def test_sources_are_cached(lib: SampleLibrary) -> None:
    a, b = lib.sources(), lib.sources()
    assert a["prose"][0] is b["prose"][0]
    a["prose"].clear()  # callers get copies, the cache is untouched
    assert len(lib.sources()["prose"]) == len(b["prose"])


def test_small_max_chars_bounds_every_sample() -> None:
    small = SampleLibrary(max_chars=600)
    groups = small.sources()
    for samples in groups.values():
        assert all(0 < len(s.text) <= 600 for s in samples)
    assert max(len(s.text) for s in groups["code"]) > 300  # chunks are packed, not tiny


def test_get_round_trips(lib: SampleLibrary) -> None:
    samples = lib.list()
    for s in samples[:: max(1, len(samples) // 200)]:
        assert lib.get(s.sample_id) is s
    prose = lib.get("prose/assert")
    assert prose.title == "assert"
    assert "assert" in prose.text


def test_get_unknown_id_raises_with_id(lib: SampleLibrary) -> None:
    for bad in ("prose/no-such-topic", "nosource/x", "user/000000000000", ""):
        with pytest.raises(SampleNotFound) as info:
            lib.get(bad)
        assert isinstance(info.value, KeyError)
        assert repr(bad) in str(info.value)


def test_unknown_source_name_is_an_error(lib: SampleLibrary) -> None:
    with pytest.raises(CorpusError, match="unknown source 'poetry'"):
        lib.list("poetry")


def test_default_sample_is_english_prose(lib: SampleLibrary) -> None:
    sid = lib.default_sample_id()
    sample = lib.get(sid)
    assert sample.source == "prose"
    assert 150 <= len(sample.text.split()) <= 400
    assert sid == SampleLibrary().default_sample_id()


def test_code_chunks_start_at_top_level_definitions(lib: SampleLibrary) -> None:
    decoder = [s for s in lib.list("code") if s.sample_id.startswith("code/json.decoder#")]
    assert len(decoder) >= 2
    assert decoder[0].text.startswith('"""Implementation of JSONDecoder')
    starts = [s for s in decoder[1:] if "(cont.)" not in s.title]  # "(cont.)": a big class split at blank lines
    assert starts
    for s in starts:
        assert re.match(r"(class |def |@|#)", s.text), s.text[:80]
    assert "class JSONDecoder" in "".join(s.text for s in decoder)


def test_chunk_code_splits_and_names_blocks() -> None:
    src = "import os\n\n\n@dec\ndef a():\n    return 1\n\n\n# about B\nclass B:\n    x = 1\n"
    blocks = sources.code_blocks(src)
    assert [names for _, names in blocks] == [[], ["a"], ["B"]]
    assert blocks[1][0].startswith("@dec\ndef a")
    assert blocks[2][0].startswith("# about B\nclass B")
    packed = sources.chunk_code(blocks, target=1000, limit=1000)
    assert len(packed) == 1 and packed[0][1] == ["a", "B"]
    tight = sources.chunk_code(blocks, target=30, limit=30)
    assert all(len(text) <= 30 for text, _ in tight)


# -- user text --------------------------------------------------------------------------------


def test_add_user_text() -> None:
    small = SampleLibrary(max_chars=500)
    text = "The quick brown fox jumps over the lazy dog."
    s = small.add_user_text(text)
    assert s.sample_id == "user/" + hashlib.sha1(text.encode()).hexdigest()[:12]
    assert s.source == "user" and s.text == text
    assert small.get(s.sample_id) is s
    assert small.add_user_text(text).sample_id == s.sample_id
    assert [u.sample_id for u in small.list("user")] == [s.sample_id]
    assert small.add_user_text("x" * 500).text == "x" * 500  # exactly at the bound is fine


@pytest.mark.parametrize("blank", ["", "   ", "\n\t \n"])
def test_add_user_text_empty_is_an_error(blank: str) -> None:
    with pytest.raises(CorpusError, match="empty"):
        SampleLibrary().add_user_text(blank)


def test_add_user_text_too_long_names_the_bound() -> None:
    small = SampleLibrary(max_chars=500)
    with pytest.raises(CorpusError) as info:
        small.add_user_text("y" * 501)
    assert "500" in str(info.value) and "max_chars" in str(info.value)
    assert small.list("user") == []


# -- files ------------------------------------------------------------------------------------


def test_files_source_txt_and_jsonl(tmp_path: Path) -> None:
    paras = [f"Paragraph {i}. " + "word " * 25 for i in range(6)]  # ~140 chars each
    (tmp_path / "notes.txt").write_text("\n\n".join(paras) + "\n", encoding="utf-8")
    lines = [
        json.dumps({"text": "First record text.", "title": "Record one"}),
        "{not json",
        json.dumps({"text": "Third line, no title."}),
        json.dumps({"title": "no text field"}),
        "",
    ]
    (tmp_path / "data.jsonl").write_text("\n".join(lines), encoding="utf-8")
    (tmp_path / "ignored.csv").write_text("a,b\n", encoding="utf-8")

    lib = SampleLibrary(tmp_path, max_chars=300)
    files = lib.list("files")
    ids = [s.sample_id for s in files]
    assert ids[:2] == ["files/data.jsonl#0", "files/data.jsonl#2"]
    assert files[0].title == "Record one" and files[0].text == "First record text."
    assert files[1].text == "Third line, no title."
    txt = [s for s in files if s.sample_id.startswith("files/notes.txt#")]
    assert [s.sample_id for s in txt] == [f"files/notes.txt#{i}" for i in range(len(txt))]
    assert len(txt) == 3  # two ~140-char paragraphs fit in 300 chars
    assert all(len(s.text) <= 300 for s in txt)
    assert "\n\n".join(s.text for s in txt) == "\n\n".join(p.rstrip() for p in paras)
    assert len(lib.warnings) == 2
    assert any("data.jsonl:2" in w and "malformed" in w for w in lib.warnings)
    assert any("data.jsonl:4" in w and "'text'" in w for w in lib.warnings)
    assert lib.get("files/notes.txt#1") is txt[1]


def test_missing_samples_dir_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="does not exist"):
        SampleLibrary(tmp_path / "nope")


# -- chunks, labeled data, training text ------------------------------------------------------


def test_text_chunks_deterministic_and_bounded(lib: SampleLibrary) -> None:
    chunks = lib.text_chunks("prose", 50, min_chars=200, max_chars=800, seed=3)
    assert len(chunks) == 50 and len(set(chunks)) == 50
    assert all(200 <= len(c) <= 800 for c in chunks)
    assert chunks == SampleLibrary().text_chunks("prose", 50, min_chars=200, max_chars=800, seed=3)
    assert chunks != lib.text_chunks("prose", 50, min_chars=200, max_chars=800, seed=4)
    with pytest.raises(CorpusError, match="not available"):
        lib.text_chunks("files", 5)
    with pytest.raises(CorpusError, match="min_chars"):
        lib.text_chunks("prose", 5, min_chars=500, max_chars=100)


def test_labeled_dataset_balanced_and_deterministic(lib: SampleLibrary) -> None:
    df = lib.labeled_dataset(labels=("prose", "code"), n_per_label=40, min_chars=150, max_chars=900, seed=1)
    assert list(df.columns) == ["text", "label"]
    assert df.shape == (80, 2)
    assert df["label"].value_counts().to_dict() == {"prose": 40, "code": 40}
    assert df["text"].str.len().between(150, 900).all()
    assert df["text"].is_unique
    again = SampleLibrary().labeled_dataset(
        labels=("prose", "code"), n_per_label=40, min_chars=150, max_chars=900, seed=1
    )
    assert df.equals(again)
    other = lib.labeled_dataset(labels=("prose", "code"), n_per_label=40, min_chars=150, max_chars=900, seed=2)
    assert not df.equals(other)


def test_labeled_dataset_default_labels(lib: SampleLibrary) -> None:
    df = lib.labeled_dataset(n_per_label=20)
    expected = {"prose", "code"} | ({"scripture"} if HAS_BIBLE else set())
    assert set(df["label"]) == expected
    assert (df["label"].value_counts() == 20).all()


def test_labeled_dataset_missing_label_is_an_error(lib: SampleLibrary) -> None:
    with pytest.raises(CorpusError, match="files"):
        lib.labeled_dataset(labels=("prose", "files"), n_per_label=5)


def test_training_text(lib: SampleLibrary) -> None:
    docs = lib.training_text(30_000)
    total = sum(len(d) for d in docs)
    assert 29_000 <= total <= 30_000
    assert all(d.strip() and len(d) <= 2000 for d in docs)
    assert docs == SampleLibrary().training_text(30_000)
    prose_only = lib.training_text(5_000, sources=("prose",))
    prose_text = "\n\n".join(s.text for s in lib.list("prose"))
    assert all(d in prose_text for d in prose_only[:-1])
    with pytest.raises(CorpusError):
        lib.training_text(1000, sources=("files",))


# -- Debian text packages ---------------------------------------------------------------------


def test_parse_bible_handles_wrapped_verses() -> None:
    out = "\nGenesis 1\n\n  1 In the beginning.\n  2 And the earth was\nwithout form.\n\nGenesis 2\n\n  1 Thus.\n"
    assert sources.parse_bible(out, "Genesis") == [
        (1, ["In the beginning.", "And the earth was without form."]),
        (2, ["Thus."]),
    ]


@pytest.mark.skipif(not HAS_BIBLE, reason="Debian package bible-kjv (the `bible` command) is not installed")
def test_scripture_source(lib: SampleLibrary) -> None:
    samples = lib.list("scripture")
    ids = [s.sample_id for s in samples]
    assert len(samples) == sum(last for _, _, last in corpus.SCRIPTURE_BOOKS)
    gen1 = lib.get("scripture/genesis-1")
    assert gen1.title == "Genesis 1"
    assert gen1.text.startswith("In the beginning God created the heaven and the earth.\n")
    assert len(gen1.text.splitlines()) == 31  # one line per verse
    assert "The LORD is my shepherd" in lib.get("scripture/psalms-23").text
    assert "scripture/psalms-51" not in ids and "scripture/john-21" in ids
    assert not any(re.match(r"\s*\d+ ", line) for s in samples for line in s.text.splitlines())


@pytest.mark.skipif(not HAS_JARGON, reason="Debian package jargon-text is not installed")
def test_jargon_source(lib: SampleLibrary) -> None:
    samples = lib.list("jargon")
    assert len(samples) > 1000
    hacker = lib.get("jargon/hacker")
    assert hacker.title == "hacker"
    assert hacker.text.startswith("hacker: n.")
    assert "programmable systems" in hacker.text
    assert lib.get("jargon/dev-null").title == "/dev/null"
    joined = "\n".join(s.text for s in samples)
    assert "Table of Contents" not in joined and "Appendices" not in joined


@pytest.mark.skipif(not HAS_FORTUNES, reason="Debian package fortunes is not installed")
def test_fortunes_source(lib: SampleLibrary) -> None:
    samples = lib.list("fortunes")
    assert samples
    assert all(re.fullmatch(r"fortunes/[a-z-]+#\d+", s.sample_id) for s in samples)
    assert {s.sample_id.split("/")[1].split("#")[0] for s in samples} <= set(corpus.FORTUNE_FILES)
    assert not any(line.strip() == "%" for s in samples for line in s.text.splitlines())


# -- Hugging Face -----------------------------------------------------------------------------


def test_load_hf_offline_missing_dataset_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    datasets = pytest.importorskip("datasets")
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True, raising=False)
    lib = SampleLibrary()
    with pytest.raises(CorpusError) as info:
        lib.load_hf("glassbox-test/no-such-dataset-xyz", n=3)
    msg = str(info.value)
    assert "glassbox-test/no-such-dataset-xyz" in msg and "offline" in msg
    assert "hf" not in lib.sources()
