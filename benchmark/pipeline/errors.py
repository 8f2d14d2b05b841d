"""The data error every reader, check and loader raises: the CLI turns it into one message and
exit code 2 (no traceback)."""


class DataError(RuntimeError):
    """Missing or unusable data; the message names the file and says what to do."""


class DataUnavailable(DataError):
    """A dataset that is not there (no root has it, and downloading is off or failed): an
    optional OOD set is skipped for this reason, never for damaged or wrong files."""
