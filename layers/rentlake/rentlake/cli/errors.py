"""Errors the CLI reports to the user without a traceback."""


class CliError(Exception):
    """A user error: printed as ``rentlake: <message>``, exit status 2."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code
