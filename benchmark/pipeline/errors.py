"""The data error every reader, check and loader raises: the CLI turns it into one message and
exit code 2 (no traceback)."""


class DataError(RuntimeError):
    """Missing or unusable data; the message names the file and says what to do."""
