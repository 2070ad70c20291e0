"""Every error this project raises. Retries are decided by type: transient errors are retried
by Celery with back-off, permanent errors fail the chunk (and its file) at once."""


class EmotionsError(Exception):
    """Root of every error raised on purpose by this project."""


class TransientError(EmotionsError):
    """Might succeed if tried again later (busy GPU, full disk, lost connection)."""


class PermanentError(EmotionsError):
    """Will fail the same way every time; retrying only wastes GPU time."""


class ConfigurationError(PermanentError):
    """A setting is invalid or the machine cannot honour it (e.g. no CUDA device)."""


class ModelLoadError(PermanentError):
    """The model or tokenizer could not be loaded from the hub id or folder given."""


class ModelMismatchError(PermanentError):
    """A chunk was queued for another model than the one this worker holds."""


class InferenceOOMError(TransientError):
    """CUDA ran out of memory even on a batch of one comment."""


class OutputWriteError(TransientError):
    """The output file could not be written (disk full, folder missing or read-only)."""


class InputError(PermanentError):
    """An input file cannot be turned into comments; the message tells the user what to fix."""


class InputTooLargeError(InputError):
    """An input file or a single comment exceeds a configured size limit."""


class IncompleteInputError(InputError):
    """The data ends in the middle of a record (or before the first one).

    Usually the file is still being written (a downloader pausing between pages); the producer
    reads it again later and fails it only if it stays cut short, unchanged, for a long time.
    """


class DeviceFaultError(EmotionsError):
    """The GPU failed in a way that sticks to the process (illegal memory access, device-side
    assert, a cuBLAS/cuDNN execution failure): neither transient nor the chunk's fault. The
    chunk goes back to its queue and the process holding the broken CUDA context stops."""


class FolderLockedError(ConfigurationError):
    """Another producer already watches this input folder (two would re-submit each other's
    files): the message names it and says when a crashed one's lock expires."""


class FallbackToReaders(Exception):
    """The assembly's fast reading path cannot vouch for an input (a shape it does not know,
    anything the readers would refuse): the file is assembled again through the readers, whose
    verdict and wording then stand. Never leaves the assembly."""
