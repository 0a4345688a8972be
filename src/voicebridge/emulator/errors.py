"""The one exception the emulator's request handling raises: it becomes a ServiceNow error envelope."""

from __future__ import annotations


class ApiError(Exception):
    """A request the emulator rejects, rendered as ``{"error": {"message", "detail"}, "status": "failure"}``.

    ``script_style`` marks the failures the ``sn_cs.VoiceTranscriptObject`` script API reports as text
    (transcript already processed, interaction closed): with ``--script-style-errors`` they are answered
    200 with the sentence in ``result`` instead.
    """

    def __init__(
        self,
        status: int,
        message: str,
        detail: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        script_style: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.detail = detail
        self.headers = dict(headers or {})
        self.script_style = script_style


def bad_request(message: str, detail: str | None = None) -> ApiError:
    return ApiError(400, message, detail)


READ_ERROR = "Exception while reading request"
NO_RESOURCE = "Requested URI does not represent any resource"
NO_RECORD = "No Record found"
