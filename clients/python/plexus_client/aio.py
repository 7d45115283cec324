"""The asyncio client: :class:`Client`'s calls, each run in a worker thread
(``asyncio.to_thread``), so a coroutine awaits them without blocking its loop."""

from __future__ import annotations

import asyncio
import functools
from typing import Any, AsyncGenerator, Callable, Dict, List, Optional, Sequence, TypeVar, Union

from .client import CHUNK_BYTES_DEFAULT, Client, PathLike
from .signing import Request, SignedRequest

T = TypeVar("T")


class AsyncClient:
    """The async twin of :class:`Client`; construct it the same ways
    (:meth:`local`, or with ``api``, ``token``, ``key``), or around a client."""

    def __init__(self, *args: Any, client: Optional[Client] = None, **kwargs: Any) -> None:
        self.sync = client if client is not None else Client(*args, **kwargs)

    @classmethod
    def local(cls, *args: Any, **kwargs: Any) -> "AsyncClient":
        """As :meth:`Client.local`."""
        return cls(client=Client.local(*args, **kwargs))

    def __repr__(self) -> str:
        return f"AsyncClient({self.sync.api!r}, key={self.sync.key!r})"

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.to_thread(functools.partial(fn, *args, **kwargs))

    async def node(self) -> Dict[str, Any]:
        """As :meth:`Client.node`."""
        return await self._run(self.sync.node)

    async def members(self) -> List[Dict[str, Any]]:
        """As :meth:`Client.members`."""
        return await self._run(self.sync.members)

    async def names(self) -> Dict[str, Dict[str, str]]:
        """As :meth:`Client.names`."""
        return await self._run(self.sync.names)

    async def actors(self) -> List[Dict[str, Any]]:
        """As :meth:`Client.actors`."""
        return await self._run(self.sync.actors)

    async def spawn(
        self,
        kind: str,
        config: Optional[Dict[str, Any]] = None,
        name: Optional[str] = None,
        node: Optional[str] = None,
    ) -> Dict[str, str]:
        """As :meth:`Client.spawn`."""
        return await self._run(self.sync.spawn, kind, config, name, node)

    async def ask(
        self,
        text: str,
        name: Optional[str] = None,
        actor: Optional[str] = None,
        node: Optional[str] = None,
    ) -> Any:
        """As :meth:`Client.ask`."""
        return await self._run(self.sync.ask, text, name, actor, node)

    async def tell(
        self,
        text: str,
        name: Optional[str] = None,
        actor: Optional[str] = None,
        node: Optional[str] = None,
    ) -> None:
        """As :meth:`Client.tell`."""
        await self._run(self.sync.tell, text, name, actor, node)

    async def stats(self) -> Optional[Dict[str, Any]]:
        """As :meth:`Client.stats`."""
        return await self._run(self.sync.stats)

    async def metrics(self) -> str:
        """As :meth:`Client.metrics`."""
        return await self._run(self.sync.metrics)

    async def get(self, path: str, query: Optional[Dict[str, Any]] = None) -> Any:
        """As :meth:`Client.get`."""
        return await self._run(self.sync.get, path, query)

    async def post(self, path: str, payload: Any) -> Any:
        """As :meth:`Client.post`."""
        return await self._run(self.sync.post, path, payload)

    async def status(self) -> Dict[str, Any]:
        """As :meth:`Client.status`."""
        return await self._run(self.sync.status)

    async def jobs(self) -> List[Dict[str, Any]]:
        """As :meth:`Client.jobs`."""
        return await self._run(self.sync.jobs)

    async def job(self, name: str) -> Optional[Dict[str, Any]]:
        """As :meth:`Client.job`."""
        return await self._run(self.sync.job, name)

    async def job_actors(self, name: Optional[str] = None) -> List[Dict[str, Any]]:
        """As :meth:`Client.job_actors`."""
        return await self._run(self.sync.job_actors, name)

    async def sign(self, request: Request, **options: Any) -> SignedRequest:
        """As :meth:`Client.sign` (the first call asks the node its network)."""
        return await self._run(self.sync.sign, request, **options)

    async def submit(self, signed: SignedRequest) -> Dict[str, Any]:
        """As :meth:`Client.submit`."""
        return await self._run(self.sync.submit, signed)

    async def scheduler(self, request: Request) -> Dict[str, Any]:
        """As :meth:`Client.scheduler`."""
        return await self._run(self.sync.scheduler, request)

    async def deploy(self, spec: str, wait: bool = False, timeout: float = 60.0) -> Dict[str, Any]:
        """As :meth:`Client.deploy`."""
        return await self._run(self.sync.deploy, spec, wait, timeout)

    async def stop(self, job: str) -> Dict[str, Any]:
        """As :meth:`Client.stop`."""
        return await self._run(self.sync.stop, job)

    async def migrate(self, actor: str, to: str) -> Dict[str, Any]:
        """As :meth:`Client.migrate`."""
        return await self._run(self.sync.migrate, actor, to)

    async def drain(self, node: str) -> Dict[str, Any]:
        """As :meth:`Client.drain`."""
        return await self._run(self.sync.drain, node)

    async def scheduler_status(self) -> Dict[str, Any]:
        """As :meth:`Client.scheduler_status`."""
        return await self._run(self.sync.scheduler_status)

    async def wait_for_job(
        self, name: str, actors: Optional[int] = None, timeout: float = 60.0
    ) -> List[Dict[str, Any]]:
        """As :meth:`Client.wait_for_job`."""
        return await self._run(self.sync.wait_for_job, name, actors, timeout)

    async def send(
        self, actor: str, messages: Sequence[str], traceparent: Optional[str] = None
    ) -> int:
        """As :meth:`Client.send`."""
        return await self._run(self.sync.send, actor, messages, traceparent)

    async def durable(self) -> Dict[str, Any]:
        """As :meth:`Client.durable`."""
        return await self._run(self.sync.durable)

    async def models(self) -> Dict[str, Any]:
        """As :meth:`Client.models`."""
        return await self._run(self.sync.models)

    async def add_model(self, weights: Union[bytes, PathLike]) -> str:
        """As :meth:`Client.add_model`."""
        return await self._run(self.sync.add_model, weights)

    async def infer(self, target: str, inputs: Sequence[Sequence[int]]) -> List[Dict[str, Any]]:
        """As :meth:`Client.infer`."""
        return await self._run(self.sync.infer, target, inputs)

    async def classify(self, target: str, images: Sequence[Sequence[int]]) -> List[int]:
        """As :meth:`Client.classify`."""
        return await self._run(self.sync.classify, target, images)

    async def epochs(self) -> Dict[str, Any]:
        """As :meth:`Client.epochs`."""
        return await self._run(self.sync.epochs)

    async def epoch(self, epoch: int) -> Dict[str, Any]:
        """As :meth:`Client.epoch`."""
        return await self._run(self.sync.epoch, epoch)

    async def receipts(self) -> Dict[str, Any]:
        """As :meth:`Client.receipts`."""
        return await self._run(self.sync.receipts)

    async def kv_put(self, key: str, value: Union[bytes, str]) -> None:
        """As :meth:`Client.kv_put`."""
        await self._run(self.sync.kv_put, key, value)

    async def kv_get(self, key: str) -> bytes:
        """As :meth:`Client.kv_get`."""
        return await self._run(self.sync.kv_get, key)

    async def kv_delete(self, key: str) -> None:
        """As :meth:`Client.kv_delete`."""
        await self._run(self.sync.kv_delete, key)

    async def kv_list(self, prefix: str = "", limit: Optional[int] = None) -> Dict[str, bytes]:
        """As :meth:`Client.kv_list`."""
        return await self._run(self.sync.kv_list, prefix, limit)

    async def kv_watch(
        self, prefix: str = "", timeout: Optional[float] = None
    ) -> AsyncGenerator[Dict[str, Any], None]:
        """As :meth:`Client.kv_watch`: each change as it happens."""
        changes = self.sync.kv_watch(prefix, timeout)
        done = object()
        try:
            while True:
                change = await self._run(next, changes, done)
                if change is done:
                    return
                yield change
        finally:
            changes.close()

    async def put_chunk(
        self, data: bytes, replicas: Optional[int] = None, quorum: Optional[int] = None
    ) -> Dict[str, Any]:
        """As :meth:`Client.put_chunk`."""
        return await self._run(self.sync.put_chunk, data, replicas, quorum)

    async def get_chunk(self, chunk_id: str) -> bytes:
        """As :meth:`Client.get_chunk`."""
        return await self._run(self.sync.get_chunk, chunk_id)

    async def put_file(
        self,
        data: bytes,
        replicas: Optional[int] = None,
        quorum: Optional[int] = None,
        chunk_bytes: int = CHUNK_BYTES_DEFAULT,
    ) -> Dict[str, Any]:
        """As :meth:`Client.put_file`."""
        return await self._run(self.sync.put_file, data, replicas, quorum, chunk_bytes)

    async def files(self) -> List[Dict[str, Any]]:
        """As :meth:`Client.files`."""
        return await self._run(self.sync.files)

    async def file(self, file_id: str) -> Dict[str, Any]:
        """As :meth:`Client.file`."""
        return await self._run(self.sync.file, file_id)

    async def get_file(self, file_id: str) -> bytes:
        """As :meth:`Client.get_file`."""
        return await self._run(self.sync.get_file, file_id)

    async def pin(self, file_id: str) -> None:
        """As :meth:`Client.pin`."""
        await self._run(self.sync.pin, file_id)

    async def unpin(self, file_id: str) -> None:
        """As :meth:`Client.unpin`."""
        await self._run(self.sync.unpin, file_id)

    async def storage_status(self) -> Dict[str, Any]:
        """As :meth:`Client.storage_status`."""
        return await self._run(self.sync.storage_status)
