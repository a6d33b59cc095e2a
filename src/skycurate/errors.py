"""Errors a user can act on. The CLI prints these as one line; anything else is a bug."""


class SkycurateError(Exception):
    """Base of every error that carries a message meant for the user."""


class DatasetNotFound(SkycurateError):
    """A dataset name or version that the store does not hold."""


class InvalidReference(SkycurateError):
    """A dataset reference that does not parse (``ns/name@vNNNN``)."""


class StoreError(SkycurateError):
    """The store cannot be read or written (missing, permissions, bad URL)."""


class ConfigError(SkycurateError):
    """A config file that does not load or does not validate."""


class StageContractError(SkycurateError):
    """A stage got input without the columns it declares it needs."""


class PublishError(SkycurateError):
    """Publishing a version failed; nothing became visible."""
