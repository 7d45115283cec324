"""A Python client of Plexus, the distributed actor runtime.

>>> import plexus_client
>>> client = plexus_client.Client.local()   # the node `plexus up` runs here
>>> client.node()["id"]                     # doctest: +SKIP
'12D3KooW...'

:class:`Client` talks to one node's HTTP API (synchronously); :class:`AsyncClient`
is the same API for asyncio. Requests to the scheduler (deploy, stop, migrate,
drain, status) are signed here with a submitter key (:class:`SigningKey`).
Every failure is a :class:`PlexusError`; see :mod:`plexus_client.errors`.
"""

from . import digits
from .aio import AsyncClient
from .client import Client, default_data_dir, discover_api, wait_until
from .errors import (
    ApiError,
    AuthError,
    BadRequest,
    ClusterRejected,
    Conflict,
    ConnectionFailed,
    Forbidden,
    InferError,
    NotFound,
    PlexusError,
    RateLimited,
    RequestRejected,
    SchedulerRejected,
    SigningError,
    Timeout,
    Unavailable,
)
from .signing import (
    Deploy,
    Drain,
    Migrate,
    Request,
    SignedRequest,
    SigningKey,
    Status,
    Stop,
)

__version__ = "0.1.0"

__all__ = [
    "ApiError",
    "AsyncClient",
    "AuthError",
    "BadRequest",
    "Client",
    "ClusterRejected",
    "Conflict",
    "ConnectionFailed",
    "Deploy",
    "Drain",
    "Forbidden",
    "InferError",
    "Migrate",
    "NotFound",
    "PlexusError",
    "RateLimited",
    "Request",
    "RequestRejected",
    "SchedulerRejected",
    "SignedRequest",
    "SigningError",
    "SigningKey",
    "Status",
    "Stop",
    "Timeout",
    "Unavailable",
    "default_data_dir",
    "digits",
    "discover_api",
    "wait_until",
]
