"""Offline texts: the sample library (what pages analyse) and the training corpus (what lenses and SAEs
learn from). ``text`` holds the plain-text helpers, ``sources`` the offline sources and their parsers,
``library`` the :class:`SampleLibrary`, ``training`` the larger training documents."""

from analysis.corpus.library import USER_SAMPLE, CorpusError, SampleLibrary, SampleNotFound
from analysis.corpus.sources import (
    CODE_MODULES,
    DEFAULT_LABELS,
    DEFAULT_TRAINING_SOURCES,
    FORTUNE_FILES,
    FORTUNES_DIR,
    JARGON_PATH,
    SCRIPTURE_BOOKS,
    SOURCES,
    Sample,
)

__all__ = [
    "CODE_MODULES",
    "DEFAULT_LABELS",
    "DEFAULT_TRAINING_SOURCES",
    "FORTUNES_DIR",
    "FORTUNE_FILES",
    "JARGON_PATH",
    "SCRIPTURE_BOOKS",
    "SOURCES",
    "CorpusError",
    "Sample",
    "SampleLibrary",
    "SampleNotFound",
    "USER_SAMPLE",
]
