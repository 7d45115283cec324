"""The synchronous client of a Plexus node's HTTP API."""

from __future__ import annotations

import base64
import json
import os
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import (
    Any,
    Callable,
    Dict,
    Generator,
    List,
    Optional,
    Sequence,
    Tuple,
    TypeVar,
    Union,
)

from . import codec, ids
from .errors import (
    ConnectionFailed,
    InferError,
    PlexusError,
    RateLimited,
    SigningError,
    Timeout,
    Unavailable,
    error_for,
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

#: The API a client talks to when nothing says otherwise (`plexus up`'s default).
DEFAULT_API = "http://127.0.0.1:7070"
#: The token's file name in a node's data dir.
TOKEN_FILE = "api.token"
#: The client key's file name in a data dir (`plexus up` allowlists it as a submitter).
CLIENT_KEY_FILE = "client.key"
#: The environment variable that gives the API token directly (as for the CLI).
TOKEN_ENV = "PLEXUS_API_TOKEN"
#: The environment variable that gives the API's address.
API_ENV = "PLEXUS_API"
#: The environment variable naming a PEM file of CA certificates for an https API.
CA_ENV = "PLEXUS_API_CA"
#: The default chunk size of files stored with :meth:`Client.put_file`.
CHUNK_BYTES_DEFAULT = 1 << 20
#: Bounds on the chunk size the node accepts.
CHUNK_BYTES_MIN = 4 << 10
CHUNK_BYTES_MAX = 4 << 20
#: How many times a rate-limited (429) call is made before giving up.
RATE_LIMITED_TRIES = 20

_MANIFEST_MAGIC = b"plexusfm"
_MANIFEST_VERSION = 1
_SEALING_PUBLIC = 0

JSON = Any
T = TypeVar("T")
PathLike = Union[str, "os.PathLike[str]"]


def default_data_dir() -> Path:
    """Where `plexus up` keeps its data by default, as the node computes it:
    ``$XDG_DATA_HOME/plexus`` (``~/.local/share/plexus``) on Linux,
    ``~/Library/Application Support/plexus`` on macOS, ``%APPDATA%\\plexus`` on
    Windows."""
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "plexus"
    if os.name == "nt":
        appdata = os.environ.get("APPDATA")
        return (Path(appdata) if appdata else Path.home()) / "plexus"
    xdg = os.environ.get("XDG_DATA_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share"
    return base / "plexus"


def _read_text(path: Path) -> Optional[str]:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return text or None


def discover_api(token: str) -> Optional[str]:
    """The API address of the running node whose token is ``token``, from the
    index of running nodes the daemon keeps in ``<user data dir>/plexus/api-tokens``
    (one file per API address, ``<ip>-<port>``, holding that node's token)."""
    index = default_data_dir() / "api-tokens"
    try:
        entries = sorted(index.iterdir())
    except OSError:
        return None
    for entry in entries:
        if _read_text(entry) != token:
            continue
        ip, _, port = entry.name.rpartition("-")
        if not port.isdigit():
            continue
        if ip in ("0.0.0.0", "::"):
            ip = "127.0.0.1"
        host = f"[{ip}]" if ":" in ip else ip
        return f"http://{host}:{port}"
    return None


def _error_message(raw: bytes) -> Tuple[str, Any]:
    """The server's error text and parsed body from an error response."""
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        text = raw.decode("utf-8", "replace").strip()
        return (text or "(no message)", None)
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return (body["error"], body)
    return (json.dumps(body), body)


class Client:
    """A client of one node's HTTP API.

    ``api`` is the node's base URL, ``token`` its bearer token (every route but
    :meth:`node` and the signed scheduler requests needs it), ``key`` the
    submitter key that signs deploy, stop, migrate, drain and status requests.
    :meth:`local` finds all three for a node started with ``plexus up``.
    ``timeout`` bounds each call, in seconds. Over ``https``, the server's
    certificate is checked against ``ca_file`` (default ``$PLEXUS_API_CA``, as
    for the CLI: a node's self-signed certificate) or the system's roots.
    """

    def __init__(
        self,
        api: str = DEFAULT_API,
        token: Optional[str] = None,
        key: Optional[SigningKey] = None,
        timeout: float = 60.0,
        ca_file: Optional[PathLike] = None,
    ) -> None:
        if "://" not in api:
            api = "http://" + api
        self.api = api.rstrip("/")
        self.token = token
        self.key = key
        self.timeout = timeout
        ca = ca_file if ca_file is not None else os.environ.get(CA_ENV) or None
        self._ssl = ssl.create_default_context(cafile=str(ca)) if ca else None
        self._network: Optional[str] = None

    @classmethod
    def local(
        cls,
        data_dir: Optional[PathLike] = None,
        api: Optional[str] = None,
        timeout: float = 60.0,
    ) -> "Client":
        """A client of the node running on this machine from ``data_dir``
        (default: `plexus up`'s, ``~/.local/share/plexus``).

        The token is ``$PLEXUS_API_TOKEN`` or ``<data_dir>/api.token``; the key
        ``<data_dir>/client.key`` (the submitter key `plexus up` allowlists);
        the address ``api``, else ``$PLEXUS_API``, else the one the running node
        registered for its token, else ``http://127.0.0.1:7070``.
        """
        directory = Path(data_dir) if data_dir is not None else default_data_dir()
        token = os.environ.get(TOKEN_ENV, "").strip() or _read_text(directory / TOKEN_FILE)
        if token is None:
            raise PlexusError(
                f"no API token in {directory / TOKEN_FILE}: is a node (`plexus up`) "
                "running from that data dir?"
            )
        key_path = directory / CLIENT_KEY_FILE
        key = SigningKey.from_file(key_path) if key_path.exists() else None
        address = api or os.environ.get(API_ENV) or discover_api(token) or DEFAULT_API
        return cls(address, token=token, key=key, timeout=timeout)

    def __repr__(self) -> str:
        return f"Client({self.api!r}, key={self.key!r})"

    # -- HTTP ---------------------------------------------------------------

    def _url(self, path: str, query: Optional[Dict[str, Any]] = None) -> str:
        url = self.api + path
        if query:
            pairs = {k: v for k, v in query.items() if v is not None}
            if pairs:
                url += "?" + urllib.parse.urlencode(pairs)
        return url

    def _open(
        self,
        method: str,
        path: str,
        body: Optional[bytes] = None,
        content_type: Optional[str] = None,
        query: Optional[Dict[str, Any]] = None,
        auth: bool = True,
        scheduler: bool = False,
        timeout: Optional[float] = -1.0,
    ) -> Any:
        """Sends a request and returns the open response; raises the typed error
        of an error status. A 429 is retried after the server's ``retry-after``."""
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        if auth and self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        wait = self.timeout if timeout is not None and timeout < 0 else timeout
        for attempt in range(RATE_LIMITED_TRIES):
            req = urllib.request.Request(
                self._url(path, query), data=body, headers=headers, method=method
            )
            try:
                return urllib.request.urlopen(req, timeout=wait, context=self._ssl)
            except urllib.error.HTTPError as e:
                raw = e.read()
                message, parsed = _error_message(raw)
                retry_after = _retry_after(e.headers.get("retry-after"))
                err = error_for(e.code, message, path, parsed, retry_after, scheduler)
                if isinstance(err, RateLimited) and attempt + 1 < RATE_LIMITED_TRIES:
                    time.sleep(min(retry_after or 0.1, 2.0))
                    continue
                raise err from None
            except urllib.error.URLError as e:
                raise ConnectionFailed(f"cannot reach the node at {self.api}: {e.reason}") from None
            except OSError as e:
                raise ConnectionFailed(f"{method} {self.api}{path}: {e}") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _call(
        self,
        method: str,
        path: str,
        body: Optional[bytes] = None,
        content_type: Optional[str] = None,
        query: Optional[Dict[str, Any]] = None,
        auth: bool = True,
        scheduler: bool = False,
    ) -> bytes:
        with self._open(method, path, body, content_type, query, auth, scheduler) as r:
            try:
                data: bytes = r.read()
            except OSError as e:
                raise ConnectionFailed(f"{method} {self.api}{path}: the answer was cut short: {e}") from None
            return data

    def _json(
        self,
        method: str,
        path: str,
        payload: Any = None,
        query: Optional[Dict[str, Any]] = None,
        auth: bool = True,
        scheduler: bool = False,
    ) -> JSON:
        body = None if payload is None else json.dumps(payload).encode("utf-8")
        ctype = None if payload is None else "application/json"
        raw = self._call(method, path, body, ctype, query, auth, scheduler)
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise PlexusError(f"{path}: the node answered something that is not JSON: {e}") from e

    def get(self, path: str, query: Optional[Dict[str, Any]] = None) -> JSON:
        """GETs any JSON route (``/v1/...``)."""
        return self._json("GET", path, query=query)

    def post(self, path: str, payload: Any) -> JSON:
        """POSTs JSON to any route."""
        return self._json("POST", path, payload)

    # -- the node -----------------------------------------------------------

    def node(self) -> Dict[str, Any]:
        """This node: id, version, commit, addresses, network, allowlist version
        (no token needed)."""
        info: Dict[str, Any] = self._json("GET", "/v1/node", auth=False)
        return info

    @property
    def network(self) -> str:
        """The network the node serves (signed requests name it); asked once."""
        if self._network is None:
            network = self.node().get("network")
            if not isinstance(network, str) or not network:
                raise PlexusError("the node names no network (is it a daemon with a mesh?)")
            self._network = network
        return self._network

    def members(self) -> List[Dict[str, Any]]:
        """The membership view: the other nodes this node knows, and their state."""
        out: List[Dict[str, Any]] = self.get("/v1/members")
        return out

    def names(self) -> Dict[str, Dict[str, str]]:
        """The cluster registry: name -> ``{node, actor}``."""
        out: Dict[str, Dict[str, str]] = self.get("/v1/names")
        return out

    def actors(self) -> List[Dict[str, Any]]:
        """The actors running on this node (system actors included)."""
        out: List[Dict[str, Any]] = self.get("/v1/actors")
        return out

    def spawn(
        self,
        kind: str,
        config: Optional[Dict[str, Any]] = None,
        name: Optional[str] = None,
        node: Optional[str] = None,
    ) -> Dict[str, str]:
        """Spawns a plain (non-durable) actor of ``kind`` here or on ``node``;
        returns ``{actor, node}``."""
        payload: Dict[str, Any] = {"kind": kind}
        if config is not None:
            payload["config"] = config
        if name is not None:
            payload["name"] = name
        if node is not None:
            payload["node"] = node
        out: Dict[str, str] = self.post("/v1/actors", payload)
        return out

    def ask(
        self,
        text: str,
        name: Optional[str] = None,
        actor: Optional[str] = None,
        node: Optional[str] = None,
    ) -> Any:
        """Asks an ``echo`` actor (by registered ``name``, or ``actor`` id) and
        returns its reply."""
        return self.post("/v1/ask", _message(text, name, actor, node))

    def tell(
        self,
        text: str,
        name: Optional[str] = None,
        actor: Optional[str] = None,
        node: Optional[str] = None,
    ) -> None:
        """Tells an ``echo`` actor ``text`` without waiting for a reply."""
        self.post("/v1/tell", _message(text, name, actor, node))

    def stats(self) -> Optional[Dict[str, Any]]:
        """The mesh's counters."""
        out: Optional[Dict[str, Any]] = self.get("/v1/stats")
        return out

    def metrics(self) -> str:
        """The Prometheus metrics, as text."""
        return self._call("GET", "/metrics").decode("utf-8")

    # -- the scheduler ------------------------------------------------------

    def status(self) -> Dict[str, Any]:
        """The scheduler's status: ``{host, jobs, actors, draining}`` (the node
        asks it on the caller's behalf; token needed, no key)."""
        answer = self.get("/v1/jobs")
        status: Dict[str, Any] = answer.get("Status", answer)
        return status

    def jobs(self) -> List[Dict[str, Any]]:
        """The jobs: name, priority, actors, running, state, submitter."""
        jobs: List[Dict[str, Any]] = self.status().get("jobs", [])
        return jobs

    def job(self, name: str) -> Optional[Dict[str, Any]]:
        """The job named ``name``, or None."""
        return next((j for j in self.jobs() if j.get("name") == name), None)

    def job_actors(self, name: Optional[str] = None) -> List[Dict[str, Any]]:
        """The scheduler's durable actors (of job ``name``, if given): key, job,
        kind, node, active, replicas, moving_to, move_failed (why the last move
        ordered failed, or None), config."""
        actors: List[Dict[str, Any]] = self.status().get("actors", [])
        return [a for a in actors if name is None or a.get("job") == name]

    def sign(self, request: Request, **options: Any) -> SignedRequest:
        """Signs ``request`` with the client key for the node's network
        (``options``: ``seq``, ``expires_ms``, ``validity_ms``)."""
        if self.key is None:
            raise SigningError(
                "this client has no signing key: pass key=SigningKey.from_file(...) "
                "(a submitter key; `plexus up` writes one to <data dir>/client.key)"
            )
        return SignedRequest.sign(request, self.network, self.key, **options)

    def submit(self, signed: SignedRequest) -> Dict[str, Any]:
        """Sends a signed request to the scheduler; returns its answer
        (``{"Deployed": ...}``, ``{"Stopped": ...}``...). A refusal raises a
        :class:`~plexus_client.errors.SchedulerRejected`."""
        out: Dict[str, Any] = self._json(
            "POST", "/v1/scheduler", {"signed": signed.hex()}, auth=False, scheduler=True
        )
        return out

    def scheduler(self, request: Request, starting_wait: float = 30.0) -> Dict[str, Any]:
        """Signs and sends ``request``; while the scheduler says it is starting,
        signs it again and retries, for up to ``starting_wait`` seconds."""
        deadline = time.monotonic() + starting_wait
        while True:
            try:
                return self.submit(self.sign(request))
            except Unavailable as e:
                if "starting" not in e.message or time.monotonic() >= deadline:
                    raise
            time.sleep(0.2)

    def deploy(self, spec: str, wait: bool = False, timeout: float = 60.0) -> Dict[str, Any]:
        """Deploys a job spec (TOML); returns ``{job, actors: [[key, node]...]}``.
        With ``wait``, returns once every actor of the job is active."""
        answer = _unwrap(self.scheduler(Deploy(spec)), "Deployed")
        if wait:
            self.wait_for_job(answer["job"], len(answer.get("actors", [])), timeout)
        return answer

    def stop(self, job: str) -> Dict[str, Any]:
        """Stops a job and forgets its actors' state; returns ``{job, actors}``."""
        return _unwrap(self.scheduler(Stop(job)), "Stopped")

    def migrate(self, actor: str, to: str) -> Dict[str, Any]:
        """Moves an actor (``job/stage/index``) to node ``to``, live; returns
        ``{actor, from, to}``."""
        return _unwrap(self.scheduler(Migrate(actor, to)), "Migrating")

    def drain(self, node: str) -> Dict[str, Any]:
        """Moves every actor off ``node``; returns ``{node, actors}``."""
        return _unwrap(self.scheduler(Drain(node)), "Draining")

    def scheduler_status(self) -> Dict[str, Any]:
        """The scheduler's status, asked with a request signed by the client key
        (works without the API token)."""
        return _unwrap(self.scheduler(Status()), "Status")

    def wait_for_job(
        self, name: str, actors: Optional[int] = None, timeout: float = 60.0
    ) -> List[Dict[str, Any]]:
        """Waits until ``actors`` actors of job ``name`` (default: all the job
        has) are active; returns them."""

        def active() -> Optional[List[Dict[str, Any]]]:
            status = self.status()
            job = next((j for j in status.get("jobs", []) if j.get("name") == name), None)
            if job is None:
                return None
            mine = [a for a in status.get("actors", []) if a.get("job") == name]
            want = actors if actors is not None else job.get("actors", len(mine))
            running = [a for a in mine if a.get("active")]
            return running if len(running) >= want and want > 0 else None

        return wait_until(active, timeout, f"the actors of job `{name}` to be active")

    # -- durable actors -----------------------------------------------------

    def send(
        self, actor: str, messages: Sequence[str], traceparent: Optional[str] = None
    ) -> int:
        """Sends client messages to a durable actor (``job/stage/index``), exactly
        once; returns how many the node accepted."""
        if isinstance(messages, str):
            raise TypeError("`messages` is a list of strings, not one string")
        payload: Dict[str, Any] = {"actor": actor, "messages": list(messages)}
        if traceparent is not None:
            payload["traceparent"] = traceparent
        return int(self.post("/v1/send", payload)["accepted"])

    def durable(self) -> Dict[str, Any]:
        """The durable actors active here (with what each describes of itself),
        client messages sent and acknowledged, migrations."""
        out: Dict[str, Any] = self.get("/v1/durable")
        return out

    # -- models and inference -----------------------------------------------

    def models(self) -> Dict[str, Any]:
        """The models this node holds and the executors serving models."""
        out: Dict[str, Any] = self.get("/v1/models")
        return out

    def add_model(self, weights: Union[bytes, PathLike]) -> str:
        """Adds a weights file (bytes, or a path; ``plexus train --out`` writes
        one) to this node; returns its hash (64 hex digits)."""
        data = weights if isinstance(weights, (bytes, bytearray)) else Path(weights).read_bytes()
        raw = self._call("POST", "/v1/models", bytes(data), "application/octet-stream")
        return str(json.loads(raw)["hash"])

    def infer(self, target: str, inputs: Sequence[Sequence[int]]) -> List[Dict[str, Any]]:
        """Runs ``inputs`` (images of 64 pixel values 0..16 each) through the
        executor serving model ``target`` (a hash) or the executor named by
        ``target`` (its key). Returns one output per input: ``{"class",
        "logits"}``, or ``{"error"}`` for an input the executor refused."""
        payload = {"target": target, "inputs": [_pixels(i, x) for i, x in enumerate(inputs)]}
        outputs: List[Dict[str, Any]] = self.post("/v1/infer", payload)["outputs"]
        return outputs

    def classify(self, target: str, images: Sequence[Sequence[int]]) -> List[int]:
        """The class (digit) of each image; raises :class:`InferError` for an
        output that is an error."""
        out = []
        for i, o in enumerate(self.infer(target, images)):
            if "class" not in o:
                raise InferError(i, str(o.get("error", o)))
            out.append(int(o["class"]))
        return out

    # -- epochs and work ----------------------------------------------------

    def epochs(self) -> Dict[str, Any]:
        """The epoch service: DKG state, group key, threshold, each epoch's state."""
        out: Dict[str, Any] = self.get("/v1/epochs")
        return out

    def epoch(self, epoch: int) -> Dict[str, Any]:
        """One signed checkpoint: its JSON and ``export`` (hex), which
        ``plexus checkpoint verify`` checks offline. 404 until it is signed."""
        out: Dict[str, Any] = self.get(f"/v1/epochs/{int(epoch)}")
        return out

    def receipts(self) -> Dict[str, Any]:
        """Per epoch, per worker: receipts, sampled, verified, disputed; the
        evidence of wrong work this node holds."""
        out: Dict[str, Any] = self.get("/v1/receipts")
        return out

    # -- key-value store ----------------------------------------------------

    def kv_put(self, key: str, value: Union[bytes, str]) -> None:
        """Sets ``key`` to ``value`` (bytes, or text stored as UTF-8)."""
        data = value.encode("utf-8") if isinstance(value, str) else bytes(value)
        self._call("PUT", _kv_path(key), data, "application/octet-stream")

    def kv_get(self, key: str) -> bytes:
        """The value of ``key``; raises :class:`~plexus_client.errors.NotFound`
        if there is none."""
        return self._call("GET", _kv_path(key))

    def kv_delete(self, key: str) -> None:
        """Deletes ``key`` (no error if it is absent)."""
        self._call("DELETE", _kv_path(key))

    def kv_list(self, prefix: str = "", limit: Optional[int] = None) -> Dict[str, bytes]:
        """The keys starting with ``prefix`` and their values, in key order."""
        items = self.get("/v1/kv", {"prefix": prefix, "limit": limit})["items"]
        return {item["key"]: _kv_value(item) for item in items}

    def kv_watch(
        self, prefix: str = "", timeout: Optional[float] = None
    ) -> Generator[Dict[str, Any], None, None]:
        """Every later change under ``prefix``, as it happens: ``{key, value,
        time_us, node}`` (``value`` as bytes) or ``{key, deleted: True, ...}``.
        Blocks between changes; close the generator to stop watching."""
        response = self._open("GET", "/v1/watch/kv", query={"prefix": prefix}, timeout=timeout)
        with response:
            for line in response:
                if not line.strip():
                    continue
                change = json.loads(line)
                if "key" not in change:  # a keep-alive
                    continue
                if "value" in change or "value_base64" in change:
                    change["value"] = _kv_value(change)
                    change.pop("value_base64", None)
                yield change

    # -- storage ------------------------------------------------------------

    def put_chunk(
        self, data: bytes, replicas: Optional[int] = None, quorum: Optional[int] = None
    ) -> Dict[str, Any]:
        """Stores one chunk (at most 4 MiB); returns ``{id, holders}`` once
        ``quorum`` nodes hold it."""
        raw = self._call(
            "POST",
            "/v1/fs/chunks",
            bytes(data),
            "application/octet-stream",
            {"replicas": replicas, "quorum": quorum},
        )
        out: Dict[str, Any] = json.loads(raw)
        return out

    def get_chunk(self, chunk_id: str) -> bytes:
        """A chunk's bytes (the node checks them against the id)."""
        return self._call("GET", f"/v1/fs/chunks/{urllib.parse.quote(chunk_id, safe='')}")

    def put_file(
        self,
        data: bytes,
        replicas: Optional[int] = None,
        quorum: Optional[int] = None,
        chunk_bytes: int = CHUNK_BYTES_DEFAULT,
    ) -> Dict[str, Any]:
        """Stores ``data`` as a *public* file (not sealed: every storing node can
        read it): each chunk, then the manifest. Returns ``{id, size, chunks,
        sealed, replicas, holders}``. Sealed files need ``plexus fs put``."""
        if not CHUNK_BYTES_MIN <= chunk_bytes <= CHUNK_BYTES_MAX:
            raise ValueError(
                f"chunk_bytes: {CHUNK_BYTES_MIN}..={CHUNK_BYTES_MAX}, not {chunk_bytes}"
            )
        data = bytes(data)
        chunk_ids = [
            self.put_chunk(data[at : at + chunk_bytes], replicas, quorum)["id"]
            for at in range(0, len(data), chunk_bytes)
        ]
        manifest = public_manifest(len(data), chunk_bytes, chunk_ids)
        raw = self._call(
            "POST",
            "/v1/fs/files",
            manifest,
            "application/octet-stream",
            {"replicas": replicas, "quorum": quorum},
        )
        out: Dict[str, Any] = json.loads(raw)
        return out

    def files(self) -> List[Dict[str, Any]]:
        """The files recorded: id, size, chunks, sealed, replicas, pinned..."""
        out: List[Dict[str, Any]] = self.get("/v1/fs/files")["files"]
        return out

    def file(self, file_id: str) -> Dict[str, Any]:
        """A file's manifest summary and where each chunk's copies are."""
        out: Dict[str, Any] = self.get(f"/v1/fs/files/{urllib.parse.quote(file_id, safe='')}")
        return out

    def get_file(self, file_id: str) -> bytes:
        """A public file's bytes (a sealed one is a 409: open it with ``plexus fs get``)."""
        return self._call("GET", f"/v1/fs/files/{urllib.parse.quote(file_id, safe='')}/content")

    def pin(self, file_id: str) -> None:
        """Pins a file (kept, and repaired, until unpinned)."""
        self._call("POST", f"/v1/fs/files/{urllib.parse.quote(file_id, safe='')}/pin")

    def unpin(self, file_id: str) -> None:
        """Unpins a file (its chunks may then be collected)."""
        self._call("DELETE", f"/v1/fs/files/{urllib.parse.quote(file_id, safe='')}/pin")

    def storage_status(self) -> Dict[str, Any]:
        """This node's shard of the storage."""
        out: Dict[str, Any] = self.get("/v1/fs/status")
        return out


def wait_until(
    condition: Callable[[], Optional[T]], timeout: float, what: str, interval: float = 0.2
) -> T:
    """Polls ``condition`` until it returns something other than None (returned)
    or ``timeout`` seconds pass (:class:`~plexus_client.errors.Timeout`, naming
    ``what`` and the last error seen). Errors a node gives while it starts
    (503s) are retried."""
    deadline = time.monotonic() + timeout
    last: Optional[Exception] = None
    while True:
        try:
            value = condition()
            if value is not None:
                return value
        except (Unavailable, ConnectionFailed) as e:
            last = e
        if time.monotonic() >= deadline:
            why = f" (last error: {last})" if last else ""
            raise Timeout(f"timed out after {timeout:g} s waiting for {what}{why}")
        time.sleep(interval)


def public_manifest(size: int, chunk_bytes: int, chunk_ids: Sequence[str]) -> bytes:
    """The codec frame of a public file's manifest: magic, version, size, chunk
    size, sealing (``Public``), the chunks' digests in order."""
    expected = -(-size // chunk_bytes)
    if len(chunk_ids) != expected:
        raise ValueError(f"{len(chunk_ids)} chunks cannot hold {size} bytes in chunks of {chunk_bytes}")
    body = (
        codec.fixed(_MANIFEST_MAGIC, 8)
        + bytes([_MANIFEST_VERSION])
        + codec.varint(size)
        + codec.varint(chunk_bytes)
        + codec.variant(_SEALING_PUBLIC)
        + codec.varint(len(chunk_ids))
        + b"".join(ids.chunk_digest(c) for c in chunk_ids)
    )
    return codec.frame(body)


def _retry_after(value: Optional[str]) -> Optional[float]:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _unwrap(answer: Dict[str, Any], variant: str) -> Dict[str, Any]:
    """The payload of the scheduler's answer ``{variant: payload}``."""
    if variant not in answer:
        raise PlexusError(f"the scheduler answered {answer!r}, not {variant}")
    payload: Dict[str, Any] = answer[variant]
    return payload


def _message(
    text: str, name: Optional[str], actor: Optional[str], node: Optional[str]
) -> Dict[str, Any]:
    payload: Dict[str, Any] = {"text": text}
    for field, value in (("name", name), ("actor", actor), ("node", node)):
        if value is not None:
            payload[field] = value
    return payload


def _pixels(index: int, image: Sequence[int]) -> List[int]:
    """Checks one image: 64 whole numbers 0..16 (as the data set holds them)."""
    values = list(image)
    if len(values) != 64:
        raise ValueError(f"inputs[{index}]: an image is 64 pixel values, not {len(values)}")
    pixels = []
    for at, p in enumerate(values):
        whole = isinstance(p, int) or (isinstance(p, float) and p.is_integer())
        if isinstance(p, bool) or not whole or not 0 <= p <= 16:
            raise ValueError(
                f"inputs[{index}][{at}]: pixel values are whole numbers 0..=16, not {p!r}"
            )
        pixels.append(int(p))
    return pixels


def _kv_path(key: str) -> str:
    if not key:
        raise ValueError("a key-value key is not empty")
    return "/v1/kv/" + urllib.parse.quote(key, safe="/")


def _kv_value(item: Dict[str, Any]) -> bytes:
    if "value_base64" in item:
        return base64.b64decode(item["value_base64"])
    return str(item.get("value", "")).encode("utf-8")


__all__ = [
    "Client",
    "DEFAULT_API",
    "default_data_dir",
    "discover_api",
    "public_manifest",
    "wait_until",
]
