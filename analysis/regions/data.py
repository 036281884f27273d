"""Labeled datasets for the Regions (NRAG) page: ``text`` + ``label`` from files, HF datasets or the
built-in offline set, validated with messages that name the problem and the bound.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.errors import InputError
from analysis.params import parse_int

TEXT_COLUMN = "text"
LABEL_COLUMN = "label"


@dataclass(frozen=True)
class LabeledDataset:
    """Texts with string labels; ``classes`` fixes the category order (ids are indexes into it)."""

    texts: tuple[str, ...]
    labels: tuple[str, ...]
    classes: tuple[str, ...]
    source: str
    warnings: tuple[str, ...] = field(default=())

    @property
    def label_ids(self) -> np.ndarray:
        index = {c: i for i, c in enumerate(self.classes)}
        return np.array([index[lab] for lab in self.labels], dtype=np.int64)

    @property
    def content_hash(self) -> str:
        """sha256 over classes, texts and labels: the disk-cache key of everything derived from it."""
        h = hashlib.sha256()
        h.update(json.dumps(list(self.classes)).encode())
        for text, label in zip(self.texts, self.labels, strict=True):
            h.update(len(text).to_bytes(8, "little"))
            h.update(text.encode("utf-8", "surrogatepass"))
            h.update(b"\x00" + label.encode() + b"\x00")
        return h.hexdigest()

    def counts(self) -> dict[str, int]:
        c = Counter(self.labels)
        return {name: c.get(name, 0) for name in self.classes}

    def __len__(self) -> int:
        return len(self.texts)

    def summary(self) -> dict[str, Any]:
        """JSON-able facts for the page (no texts)."""
        return {"key": self.content_hash, "n": len(self), "classes": list(self.classes), "counts": self.counts(),
                "source": self.source, "warnings": list(self.warnings)}


def from_frame(frame: pd.DataFrame, source: str, max_rows: int, class_names: list[str] | None = None,
               text_column: str = TEXT_COLUMN, label_column: str = LABEL_COLUMN) -> LabeledDataset:
    """Validate a table into a :class:`LabeledDataset`.

    ``class_names`` maps integer labels to names (an HF ``ClassLabel``); every listed class must have
    at least one text. Clear :class:`InputError` for a missing column, empty labels or texts, an empty
    class, fewer than two classes, or more rows than ``max_rows``.
    """
    columns = [str(c) for c in frame.columns]
    for wanted, what in ((text_column, "text"), (label_column, "label")):
        if wanted not in columns:
            raise InputError(f"{source}: no '{wanted}' column ({what}); the columns are: "
                             f"{', '.join(columns) or 'none'}. Rename the {what} column to '{wanted}'.")
    if len(frame) == 0:
        raise InputError(f"{source}: the dataset has no rows.")
    if len(frame) > max_rows:
        raise InputError(f"{source}: {len(frame):,} rows; the limit is {max_rows:,} rows "
                         "(max_dataset_rows in config.py). Use a smaller sample.")
    texts_raw = frame[text_column].tolist()
    labels_raw = frame[label_column].tolist()
    bad_text = [i for i, t in enumerate(texts_raw) if not isinstance(t, str) or not t.strip()]
    if bad_text:
        raise InputError(f"{source}: {len(bad_text)} row(s) have an empty or non-text '{text_column}' "
                         f"(first at row {bad_text[0] + 1}).")
    bad_label = [i for i, lab in enumerate(labels_raw) if lab is None or (isinstance(lab, float) and np.isnan(lab))
                 or (isinstance(lab, str) and not lab.strip())]
    if bad_label:
        raise InputError(f"{source}: {len(bad_label)} row(s) have an empty '{label_column}' (first at row {bad_label[0] + 1}).")
    if class_names is not None:
        try:
            labels = [class_names[int(lab)] if not isinstance(lab, str) else lab for lab in labels_raw]
        except (IndexError, ValueError) as exc:
            raise InputError(f"{source}: a label is outside the class list {class_names}.") from exc
        classes = list(class_names)
    else:
        labels = [str(lab).strip() if not isinstance(lab, float) or not lab.is_integer() else str(int(lab))
                  for lab in labels_raw]
        classes = sorted(set(labels))
    counts = Counter(labels)
    empty = [c for c in classes if counts.get(c, 0) == 0]
    if empty:
        raise InputError(f"{source}: class(es) {', '.join(map(repr, empty))} have no texts; every class needs at least one.")
    if len(classes) < 2:
        raise InputError(f"{source}: only one class ({classes[0]!r}); regions compare at least two categories.")
    texts = tuple(str(t) for t in texts_raw)
    return LabeledDataset(texts=texts, labels=tuple(labels), classes=tuple(classes), source=source)


def parse_table_bytes(raw: bytes, filename: str, max_bytes: int, max_rows: int) -> LabeledDataset:
    """A CSV, JSONL or JSON (list of records) file's bytes -> dataset; bounded by ``max_bytes``."""
    if len(raw) > max_bytes:
        raise InputError(f"{filename}: {len(raw) / 1e6:.1f} MB; the upload limit is {max_bytes / 1e6:.0f} MB "
                         "(max_upload_bytes in config.py).")
    suffix = Path(filename).suffix.lower()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{filename}: not UTF-8 text ({exc.reason} at byte {exc.start}).") from exc
    try:
        if suffix in {".jsonl", ".ndjson"}:
            frame = pd.read_json(io.StringIO(text), lines=True, dtype=False)
        elif suffix == ".json":
            frame = pd.DataFrame(json.loads(text))
        elif suffix in {".csv", ".tsv", ".txt"}:
            frame = pd.read_csv(io.StringIO(text), sep="\t" if suffix == ".tsv" else ",", dtype=str,
                                keep_default_na=False)
        else:
            raise InputError(f"{filename}: unknown file type '{suffix or 'none'}'; upload .csv, .tsv, .jsonl or .json.")
    except InputError:
        raise
    except (ValueError, pd.errors.ParserError) as exc:
        first = (str(exc).splitlines() or [""])[0][:200]
        raise InputError(f"{filename}: could not parse as {suffix[1:].upper()}: {first}") from exc
    return from_frame(frame, filename, max_rows)


def parse_upload(contents: str, filename: str, max_bytes: int, max_rows: int) -> LabeledDataset:
    """A ``dcc.Upload`` data URL (``data:...;base64,...``) -> dataset."""
    if not contents or "," not in contents:
        raise InputError("The upload is empty.")
    payload = contents.split(",", 1)[1]
    if len(payload) * 3 // 4 > max_bytes + 3:  # reject before decoding a huge payload
        raise InputError(f"{filename}: {len(payload) * 3 / 4e6:.1f} MB; the upload limit is {max_bytes / 1e6:.0f} MB "
                         "(max_upload_bytes in config.py).")
    try:
        raw = base64.b64decode(payload, validate=False)
    except (binascii.Error, ValueError) as exc:
        raise InputError(f"{filename}: the upload is not valid base64.") from exc
    return parse_table_bytes(raw, filename, max_bytes, max_rows)


def _from_hf(ds: Any, source: str, max_rows: int) -> LabeledDataset:
    """An HF ``Dataset`` (or the ``train`` split of a ``DatasetDict``) -> dataset."""
    if hasattr(ds, "keys") and not hasattr(ds, "features"):
        splits = list(ds.keys())
        ds = ds["train"] if "train" in splits else ds[splits[0]]
    names = list(ds.column_names)
    for wanted in (TEXT_COLUMN, LABEL_COLUMN):
        if wanted not in names:
            raise InputError(f"{source}: no '{wanted}' column; the columns are: {', '.join(names)}.")
    if ds.num_rows > max_rows:
        raise InputError(f"{source}: {ds.num_rows:,} rows; the limit is {max_rows:,} rows "
                         "(max_dataset_rows in config.py). Use a smaller split or select rows first.")
    feature = ds.features[LABEL_COLUMN]
    class_names = list(feature.names) if hasattr(feature, "names") else None
    frame = pd.DataFrame({TEXT_COLUMN: ds[TEXT_COLUMN], LABEL_COLUMN: ds[LABEL_COLUMN]})
    return from_frame(frame, source, max_rows, class_names=class_names)


def load_saved_dataset(path: str, max_rows: int, settings: Any = None) -> LabeledDataset:
    """A directory written by ``Dataset.save_to_disk`` (or ``DatasetDict``), under the path policy."""
    import datasets

    from analysis.paths import user_path

    if settings is not None:
        folder = user_path(settings, path, "saved dataset folder", field="regions-saved")
    else:  # the CLI: the user's own machine
        folder = Path(path).expanduser()
        if not folder.is_dir():
            raise InputError(f"'{path}' is not a directory: give the folder written by Dataset.save_to_disk().")
    try:
        ds = datasets.load_from_disk(str(folder))
    except (FileNotFoundError, ValueError) as exc:
        raise InputError(f"'{path}' is not a saved HF dataset ({str(exc).splitlines()[0][:200]}).") from exc
    return _from_hf(ds, folder.name, max_rows)


def load_hub_dataset(name: str, max_rows: int, split: str = "train", config: str | None = None) -> LabeledDataset:
    """An HF hub dataset by name (online only); the split must fit in ``max_rows``."""
    import datasets

    from analysis.hub import hub_offline, offline_message

    if not name or not name.strip():
        raise InputError("Give an HF dataset name, e.g. 'ag_news' or 'imdb'.", field="regions-hub")
    if hub_offline():
        raise InputError(offline_message(f"the HF dataset '{name}'", "Upload a CSV/JSONL, give a saved dataset "
                                         "folder, or use the built-in dataset."), field="regions-hub")
    try:
        ds = datasets.load_dataset(name.strip(), config or None, split=split)
    except Exception as exc:  # noqa: BLE001 - hub/network errors come in many types; report them uniformly
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:250]
        raise InputError(f"Could not load HF dataset '{name}' (split '{split}'): {first}") from exc
    return _from_hf(ds, f"{name}@{split}", max_rows)


def builtin_dataset(samples: Any, n_per_label: int, max_rows: int, labels: tuple[str, ...] | None = None,
                    seed: int = 0, max_chars: int = 1200) -> LabeledDataset:
    """The offline labeled set from the sample library: prose vs code vs scripture (where present)."""
    from analysis.corpus import DEFAULT_LABELS, CorpusError

    wanted = labels or DEFAULT_LABELS
    n_labels = len([lab for lab in wanted if lab in samples.sources()]) or len(wanted)
    most = max(2, max_rows // max(1, n_labels))
    n_per_label = parse_int(n_per_label, f"Texts per label ({n_labels} labels, at most {max_rows:,} rows)", 2, most,
                            field="regions-n")
    try:
        frame = samples.labeled_dataset(labels=wanted, n_per_label=n_per_label, seed=seed,
                                        min_chars=min(200, max_chars), max_chars=max_chars)
    except CorpusError as exc:
        raise InputError(f"Built-in dataset: {exc}") from exc
    present = [lab for lab in wanted if lab in set(frame[LABEL_COLUMN])]
    n_each = len(frame) // max(1, len(present))
    return from_frame(frame, f"built-in ({' vs '.join(present)}, {n_each}/label)", max_rows, class_names=present)
