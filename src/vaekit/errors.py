"""The exception for problems a user can fix (bad input, wrong paths), and the one a signal raises."""


class VaekitError(Exception):
    """A user-facing error: the message is one sentence naming the file and the problem.

    The CLI prints it without a traceback and exits with status 2.
    """


class Preempted(BaseException):
    """Raised in the training process when it receives SIGTERM (what a cluster scheduler or
    ``docker stop`` sends) or SIGUSR1 (SLURM, before a time limit): training stops with the last
    epoch's checkpoint on disk, and the command exits with 128 + the signal's number.
    A ``BaseException``, like ``KeyboardInterrupt``, so that no ``except Exception`` swallows it."""

    def __init__(self, signum: int):
        import signal

        super().__init__(signal.Signals(signum).name)
        self.signum = signum
