"""The one exception the lab raises for anything the caller can act on."""


class LabError(RuntimeError):
    """The lab cannot be built, loaded or changed; the message says why in one line."""
