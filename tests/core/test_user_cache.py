"""The suite leaves the user's own cache dir exactly as it found it (it runs on a temporary one)."""

from __future__ import annotations

import pytest

from tests.conftest import TEST_CACHE, USER_CACHE, USER_CACHE_BEFORE, cache_fingerprint


def test_suite_uses_a_temporary_cache(settings) -> None:
    assert settings.cache_path == TEST_CACHE
    assert USER_CACHE.resolve() not in [TEST_CACHE.resolve(), *TEST_CACHE.resolve().parents]


@pytest.mark.last
def test_user_cache_dir_unchanged_by_the_suite() -> None:
    after = cache_fingerprint(USER_CACHE)
    added = sorted(set(after) - set(USER_CACHE_BEFORE))
    removed = sorted(set(USER_CACHE_BEFORE) - set(after))
    changed = sorted(k for k in set(after) & set(USER_CACHE_BEFORE) if after[k] != USER_CACHE_BEFORE[k])
    assert not (added or removed or changed), f"added {added[:5]}, removed {removed[:5]}, changed {changed[:5]}"
