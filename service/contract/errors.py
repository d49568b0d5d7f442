"""The one exception type for bad input; the service turns it into a ``{code, detail}`` 4xx response."""


class InputError(ValueError):
    """An upload the contract refuses.

    ``detail`` is shown to the caller, so it must never quote values read from the file
    (a DICOM header can carry patient names, IDs and dates).
    """

    def __init__(self, code: str, detail: str, status: int = 400) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
        self.status = status
