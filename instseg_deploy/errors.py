"""Errors a user can act on. The CLI prints them as one line, without a traceback."""


class InstsegError(Exception):
    """Base class: a problem with the user's input, not a bug."""


class ConfigError(InstsegError):
    """A config file is missing, malformed, or asks for a model we do not build."""


class CheckpointError(InstsegError):
    """Weights cannot be read safely, or do not fit the model."""


class ImageError(InstsegError):
    """An image cannot be read or has a layout we refuse."""


class ServingError(InstsegError):
    """A model server cannot be started or reached, or it refused a request."""
