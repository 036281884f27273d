"""Errors that the UI and API turn into clear messages (never a traceback).

``field`` names the control a bad value came from (a component id), so the page marks that field
invalid and puts the message beside it; errors without a field go to the page's one alert.
"""

from __future__ import annotations


class GlassboxError(Exception):
    """Base class: the message is shown to the user as is."""

    status = 400

    def __init__(self, message: str = "", field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class ModelLoadError(GlassboxError):
    """A model id or directory could not be loaded; the message names the model."""

    status = 404


class InputError(GlassboxError):
    """Bad user input (empty text, over a bound, wrong layer...); the message names the bound."""

    status = 400


class NotFound(GlassboxError):
    """An unknown item (model, index, layer, neuron, feature): HTTP 404 in the API."""

    status = 404


class PathNotAllowed(InputError):
    """A server path outside the allowed roots (HTTP 403 in the API); the message names the roots only."""

    status = 403


class Cancelled(GlassboxError):
    """A long job stopped because its ``should_stop`` said so (what it finished is kept where it can be)."""

    status = 409
