"""The one exception type for problems a user can fix (bad input, wrong paths)."""


class VaekitError(Exception):
    """A user-facing error: the message is one sentence naming the file and the problem.

    The CLI prints it without a traceback and exits with status 2.
    """
