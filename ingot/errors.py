"""Typed errors. Each carries a one-line message that names what was wrong and what is expected,
so the CLI can print it as is and the HTTP layer can map it to a 4xx body."""


class IngotError(Exception):
    """Base for every error a user can cause and fix."""


class ConfigError(IngotError):
    """A setting is missing, misspelled or out of range."""


class DataError(IngotError):
    """The dataset cannot be used as given (missing path, too few classes, too few images)."""


class ModelError(IngotError):
    """A model cannot be built, loaded or exported."""


class PublishError(IngotError):
    """A model version could not be published into the model repository."""


class NotFoundError(IngotError):
    """A named model, version or record does not exist."""
