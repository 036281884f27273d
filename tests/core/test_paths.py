"""The one path policy: local dashboards take any path, team dashboards none unless allowed, roots bound
every path control and the API alike, and a refusal never says whether the path exists."""

from __future__ import annotations

from pathlib import Path

import pytest

from analysis.errors import InputError, PathNotAllowed
from analysis.paths import looks_like_path, user_path
from analysis.settings import Settings


def test_looks_like_path():
    assert all(looks_like_path(p) for p in ["/etc", "~/x", "./a", "../b", ".", ".."])
    assert not any(looks_like_path(p) for p in ["org/name", "embedded", "gpt2", "release:sae_id", ""])


def test_local_mode_accepts_existing_paths(tmp_path):
    settings = Settings(cache_dir=str(tmp_path / "cache"))
    (tmp_path / "sae").mkdir()
    assert user_path(settings, str(tmp_path / "sae"), "SAE folder") == (tmp_path / "sae").resolve()
    with pytest.raises(InputError, match="No such folder: .* \\(the SAE folder\\)"):
        user_path(settings, str(tmp_path / "missing"), "SAE folder")
    with pytest.raises(InputError, match="Give the SAE folder's path"):
        user_path(settings, "  ", "SAE folder")


def test_roots_bound_every_path_and_name_the_roots(tmp_path):
    root = tmp_path / "allowed"
    (root / "lens").mkdir(parents=True)
    settings = Settings(cache_dir=str(tmp_path / "cache"), allowed_roots=[str(root)])
    assert user_path(settings, str(root / "lens"), "lens folder") == (root / "lens").resolve()
    escape = str(root / ".." / ".." / "etc")
    for raw in ["/etc", escape, str(tmp_path)]:
        with pytest.raises(PathNotAllowed) as info:
            user_path(settings, raw, "lens folder", field="lens-source")
        assert str(root.resolve()) in str(info.value) and "ALLOWED_ROOTS" in str(info.value)
        assert info.value.status == 403 and info.value.field == "lens-source"
    link = root / "link"
    link.symlink_to("/etc")
    with pytest.raises(PathNotAllowed):  # symlinks are followed before the check
        user_path(settings, str(link), "lens folder")


def test_refusal_does_not_reveal_existence(tmp_path):
    settings = Settings(cache_dir=str(tmp_path / "cache"), allowed_roots=[str(tmp_path / "allowed")])
    messages = set()
    for raw in ["/etc", "/no/such/place"]:
        with pytest.raises(PathNotAllowed) as info:
            user_path(settings, raw, "SAE folder")
        messages.add(str(info.value))
    assert len(messages) == 1


def test_team_mode_without_roots_reads_no_path(tmp_path):
    settings = Settings(cache_dir=str(tmp_path / "cache"), host="0.0.0.0")
    assert settings.team_mode
    with pytest.raises(PathNotAllowed, match="Server paths are off on this team dashboard"):
        user_path(settings, str(tmp_path), "dataset file", kind="file")


def test_api_sae_outside_the_roots_is_a_403_naming_them(tmp_path, runtime, client, monkeypatch):
    monkeypatch.setattr(runtime.settings, "allowed_roots", [str(tmp_path)])
    resp = client.get("/api/v1/feature", query_string={"feature": 0, "sae": "/etc"})
    body = resp.get_json()
    assert resp.status_code == 403 and str(Path(tmp_path).resolve()) in body["error"], body


def test_every_page_path_control_follows_the_policy(tmp_path, runtime, client, dash_app, monkeypatch):
    """Lens source, SAE folder, saved dataset and model folder: each refuses /etc with the roots named."""
    from analysis.settings import EMBEDDED_LM
    from tests.helpers import dash_call

    monkeypatch.setattr(runtime.settings, "allowed_roots", [str(tmp_path)])
    root = str(Path(tmp_path).resolve())
    lens = dash_call(client, dash_app, "lens-grid.figure", {
        "lens-model.value": EMBEDDED_LM, "lens-sample.value": "user", "lens-text.value": "The cat sat.",
        "lens-stat.value": "kl_final", "lens-view.value": "tuned", "lens-residual.value": "resid",
        "lens-div.value": "js", "lens-start.value": 0, "lens-width.value": 8, "lens-source.value": "/etc",
        "lens-scale.value": "auto"})
    features = dash_call(client, dash_app, "features-info.children", {
        "features-model.value": EMBEDDED_LM, "features-sample.value": "user", "features-text.value": "The cat sat.",
        "features-sae.value": "/etc", "features-feature.value": 0, "features-tab.active_tab": "dash"})
    regions = dash_call(client, dash_app, "regions-dataset.data", {
        "regions-source.value": "saved", "regions-saved.value": "/etc/passwd", "regions-load.n_clicks": 1})
    tokens = dash_call(client, dash_app, "tokens-strips.children", {
        "tokens-model.value": "/etc", "tokens-sample.value": ["user"], "tokens-text.value": "The cat sat."})
    for page, reply in [("lens", lens), ("features", features), ("regions", regions)]:
        message = reply.message(page)
        assert message and root in message and "ALLOWED_ROOTS" in message, (page, reply.side)
    assert "/etc" in (tokens.message("tokens") or "")  # a model path is not in the model list: refused first
