"""Run cache and disk store: a repeated request never runs the model again."""

from __future__ import annotations

import threading

import pytest

from analysis.cache import DiskStore, RunCache, content_key
from analysis.errors import InputError
from analysis.settings import EMBEDDED_LM


def test_repeated_request_does_not_run_the_model(runtime, smollm2):
    text = "A repeated request must come from the cache."
    before = smollm2.forward_count
    first = runtime.run(EMBEDDED_LM, text, ["blocks.3.hook_resid_post"])
    assert smollm2.forward_count == before + 1
    again = runtime.run(EMBEDDED_LM, text, ["blocks.3.hook_resid_post"])
    assert again is first and smollm2.forward_count == before + 1
    # a new site re-runs once with the union, then both are cached
    both = runtime.run(EMBEDDED_LM, text, ["blocks.5.hook_resid_post"])
    assert {"blocks.3.hook_resid_post", "blocks.5.hook_resid_post"} <= both.sites
    runtime.run(EMBEDDED_LM, text, ["blocks.3.hook_resid_post", "blocks.5.hook_resid_post"])
    assert smollm2.forward_count == before + 2


def test_concurrent_requests_run_once(runtime, smollm2):
    text = "Five callbacks ask for the same run at once."
    before = smollm2.forward_count
    threads = [threading.Thread(target=runtime.run, args=(EMBEDDED_LM, text, ["blocks.1.hook_resid_post"])) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert smollm2.forward_count == before + 1


def test_run_cache_is_bounded_in_bytes(runtime, smollm2):
    from analysis.capture import run_text

    runs = [run_text(smollm2, f"Sample number {i} for the bound.", ["blocks.0.hook_resid_post"]) for i in range(3)]
    cache = RunCache(max_bytes=runs[0].nbytes + runs[1].nbytes + 10)
    for run in runs:
        cache.put(run)
    assert len(cache) == 2 and cache.total_bytes() <= cache.max_bytes
    assert cache.get(runs[0].model_id, runs[0].text, []) is None
    assert cache.get(runs[2].model_id, runs[2].text, ["blocks.0.hook_resid_post"]) is runs[2]


def test_bad_text_is_a_clear_error(runtime):
    with pytest.raises(InputError, match="empty"):
        runtime.run(EMBEDDED_LM, "   ", [])
    with pytest.raises(InputError, match="limit is 20,000"):
        runtime.run(EMBEDDED_LM, "x" * 20_001, [])
    with pytest.raises(InputError, match="limit is 1024"):
        runtime.run(EMBEDDED_LM, "word " * 1500, [])


def test_disk_store_computes_once_and_survives_reopen(tmp_path):
    store = DiskStore(tmp_path, size_limit=10**8)
    calls = []
    key = content_key("lens", "model", "text", 3)
    assert key == content_key("lens", "model", "text", 3) and key != content_key("lens", "model", "text", 4)
    assert store.get_or_compute(key, lambda: calls.append(1) or [1, 2, 3]) == [1, 2, 3]
    assert store.get_or_compute(key, lambda: calls.append(1) or [9]) == [1, 2, 3]
    reopened = DiskStore(tmp_path, size_limit=10**8)
    assert reopened.get_or_compute(key, lambda: calls.append(1) or [9]) == [1, 2, 3]
    assert calls == [1]


def test_tokenization_is_cached_and_matches_tokenizer(runtime, smollm2):
    text = "Tokenize me once, please."
    ids = runtime.tokens("embedded:smollm2-135m-instruct", text)
    assert list(ids) == smollm2.tokenizer(text)["input_ids"]
    assert runtime.tokens("embedded:smollm2-135m-instruct", text) is ids
