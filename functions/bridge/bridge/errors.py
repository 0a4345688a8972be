"""One error tree, classified on two axes (style.md point 5).

Axis 1 is the *kind* (configuration, ServiceNow, contact store, Connect); axis 2 is what the caller should do:

- :class:`RetryableError`: nothing was applied, or the outcome is recoverable on redelivery. The contact's first
  record of the batch is reported in ``batchItemFailures`` and Kinesis redelivers it.
- :class:`PermanentError`: retrying cannot help. The contact's records are parked with the error's data.
- :class:`AmbiguousError` (retryable): the request may have been applied; never blindly re-sent, the caller
  reconciles against ServiceNow first.

Each adapter translates its driver's exceptions in exactly one function, ``raise ... from exc``.
"""

from __future__ import annotations


class BridgeError(Exception):
    """Root of every error the bridge raises on purpose."""

    reason_class = "error"


class RetryableError(BridgeError):
    """Try again later (redelivery); nothing is lost."""

    reason_class = "retryable"


class PermanentError(BridgeError):
    """Retrying cannot help: park the work with this error's data."""

    reason_class = "permanent"


class ConfigurationError(PermanentError):
    """A setting, the secret or the credentials are missing or wrong; the message names what is wrong."""

    reason_class = "configuration"


class ServiceNowError(BridgeError):
    """ServiceNow answered with an error, or did not answer usefully.

    Carries what a ServiceNow admin needs to find the request: status, message, detail, X-Transaction-ID.
    """

    reason_class = "servicenow"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        detail: str | None = None,
        transaction_id: str | None = None,
        operation: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.detail = detail
        self.transaction_id = transaction_id
        self.operation = operation

    def as_dict(self) -> dict[str, object]:
        """The error's data for parking and logs (never a request or response body)."""
        return {
            "error_class": type(self).__name__,
            "operation": self.operation,
            "status": self.status,
            "message": self.message,
            "detail": self.detail,
            "transaction_id": self.transaction_id,
        }

    def __str__(self) -> str:
        parts = [self.operation or "servicenow", f"status={self.status}" if self.status else "no response"]
        parts.append(self.message)
        if self.transaction_id:
            parts.append(f"transaction={self.transaction_id}")
        return " ".join(parts)


class ServiceNowUnavailableError(ServiceNowError, RetryableError):
    """Not applied (429, 502/503/504, 202, connection refused, an HTML page); retries within the budget ran out.

    ``retry_after``: how long ServiceNow asked us to wait (``Retry-After``, seconds from when it was raised), when it
    asked for longer than the invocation could wait; the processor then holds the shard (README "Reliability").
    """

    reason_class = "servicenow_unavailable"
    retry_after: float | None = None


class AmbiguousError(RetryableError):
    """The request may or may not have been applied."""

    reason_class = "ambiguous"


class ServiceNowAmbiguousError(ServiceNowError, AmbiguousError):
    """500, read timeout, connection dropped after sending, truncated or failure-sentence 200.

    ``timed_out`` marks the one case where ServiceNow may still be working on the request (no response yet): a
    read-back right away can miss a write that lands a moment later, so callers let the outcome settle first.
    """

    reason_class = "servicenow_ambiguous"
    timed_out = False


class ServiceNowRejectedError(ServiceNowError, PermanentError):
    """400/403/404 and other client errors: the request was rejected and will be rejected again."""

    reason_class = "servicenow_rejected"


class ServiceNowAuthError(ServiceNowError, ConfigurationError):
    """401 after one token refresh, or the OAuth token endpoint refused the client: the secret is wrong."""

    reason_class = "configuration"


class ServiceNowReadForbiddenError(ServiceNowRejectedError):
    """The Table API read used for recovery is not allowed for the integration user (ACL)."""


class ContactStoreError(BridgeError):
    """DynamoDB failed."""

    reason_class = "contact_store"


class ContactStoreUnavailableError(ContactStoreError, RetryableError):
    """Throttled or unreachable after the SDK's retries."""


class ContactConflictError(ContactStoreError, RetryableError):
    """A conditional write lost a race (another delivery of the same contact): redeliver and re-read the state."""

    reason_class = "conflict"


class ConnectLookupError(BridgeError):
    """Amazon Connect lookups (DescribeContact, DescribeUser, GetContactAttributes) failed."""

    reason_class = "connect"


class ConnectThrottledError(ConnectLookupError, RetryableError):
    """Throttled after the SDK's retries."""


class ParkingError(RetryableError):
    """The parking queue refused the message: report the records for retry instead, so nothing is lost."""

    reason_class = "parking"


class TimeBudgetExceededError(RetryableError):
    """The invocation is about to time out: stop starting new steps, let Kinesis redeliver."""

    reason_class = "time_budget"


class SettleIncompleteError(RetryableError):
    """A write that may still be landing could not be waited out before the deadline: the contact is handed back
    for redelivery with its segments still pending, never concluded "not applied" (and re-sent or re-created)."""

    reason_class = "settle_incomplete"
