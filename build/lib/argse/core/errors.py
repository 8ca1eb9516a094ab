"""The one exception type for user errors: entry points print its message and exit 2."""


class ArgseError(Exception):
    """A mistake in input (config, data, files) that the user can fix; printed as one sentence."""
