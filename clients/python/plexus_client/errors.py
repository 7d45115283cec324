"""The errors the client raises. Catch :class:`PlexusError` for all of them."""

from __future__ import annotations

from typing import Any, Optional


class PlexusError(Exception):
    """Anything the client could not do."""


class ConnectionFailed(PlexusError):
    """The node's API could not be reached (not running, wrong address)."""


class ApiError(PlexusError):
    """The node answered with an error status.

    ``status`` is the HTTP status, ``message`` the server's ``{"error": ...}``
    text (or the raw body when it sent no JSON), ``path`` the route called.
    """

    def __init__(self, status: int, message: str, path: str = "", body: Any = None) -> None:
        self.status = status
        self.message = message
        self.path = path
        self.body = body
        where = f"{path}: " if path else ""
        super().__init__(f"{where}{status}: {message}")


class BadRequest(ApiError):
    """400: the request is malformed or refused as it stands (fix it, then retry)."""


class AuthError(ApiError):
    """401: no API token, or the wrong one."""


class Forbidden(ApiError):
    """403: the Host header is not allowed, or the name is reserved."""


class NotFound(ApiError):
    """404: no such key, actor, file, model or service."""


class Conflict(ApiError):
    """409: the cluster's present state refuses it (it may succeed later)."""


class RateLimited(ApiError):
    """429: too many requests; ``retry_after`` is the server's hint in seconds."""

    def __init__(
        self,
        status: int,
        message: str,
        path: str = "",
        body: Any = None,
        retry_after: Optional[float] = None,
    ) -> None:
        super().__init__(status, message, path, body)
        self.retry_after = retry_after


class Unavailable(ApiError):
    """502, 503, 504: a service or another node failed or is starting; retry later."""


class SchedulerRejected(ApiError):
    """The scheduler refused a signed request; nothing changed. Raised as one of
    its subclasses, which are also the status's error class."""


class RequestRejected(SchedulerRejected, BadRequest):
    """The request is at fault (bad signature, wrong network, not an allowlisted
    submitter, a replay, expired, an invalid job spec): asked again unchanged, it
    gets the same answer."""


class ClusterRejected(SchedulerRejected, Conflict):
    """The cluster's present state refuses it (no room, unknown job or node):
    the same request may succeed later."""


class SigningError(PlexusError):
    """A key file that cannot be read, or a request that cannot be signed."""


class InferError(PlexusError):
    """The executor answered an input with an error instead of a class."""

    def __init__(self, index: int, message: str) -> None:
        self.index = index
        self.message = message
        super().__init__(f"input {index}: {message}")


class Timeout(PlexusError):
    """A condition waited for did not hold within its deadline."""


_BY_STATUS = {
    400: BadRequest,
    401: AuthError,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    502: Unavailable,
    503: Unavailable,
    504: Unavailable,
}


def error_for(
    status: int,
    message: str,
    path: str = "",
    body: Any = None,
    retry_after: Optional[float] = None,
    scheduler: bool = False,
) -> ApiError:
    """The typed error for an HTTP error status (``scheduler``: the answer to a
    signed scheduler request, where 400 and 409 are the scheduler's refusals)."""
    if scheduler and status == 400:
        return RequestRejected(status, message, path, body)
    if scheduler and status == 409:
        return ClusterRejected(status, message, path, body)
    if status == 429:
        return RateLimited(status, message, path, body, retry_after)
    cls = _BY_STATUS.get(status, ApiError)
    return cls(status, message, path, body)
