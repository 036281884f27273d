"""Errors that the UI and API turn into clear messages (never a traceback)."""


class GlassboxError(Exception):
    """Base class: the message is shown to the user as is."""

    status = 400


class ModelLoadError(GlassboxError):
    """A model id or directory could not be loaded; the message names the model."""

    status = 404


class InputError(GlassboxError):
    """Bad user input (empty text, over a bound, wrong layer...); the message names the bound."""

    status = 400
