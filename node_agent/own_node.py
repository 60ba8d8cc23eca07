"""This agent's own Node, kept current by a watch (as kubelet and virt-handler keep theirs): its rack,
roles and allocatable, and whether it is gone (deleted, or tainted out-of-service). Offers are answered
from it, never from a fresh read of the API."""

import asyncio
import logging
from collections.abc import Callable

from rackmesh.kube_client import NODES, KubeApiError, KubeClient
from rackmesh.nodes import NodeState, node_state

logger = logging.getLogger(__name__)
RETRY_SECONDS = 1.0


class OwnNode:
    def __init__(self, kube: KubeClient, name: str, rack_label: str) -> None:
        self._kube = kube
        self._name = name
        self._rack_label = rack_label
        self.state: NodeState | None = None  # None while the Node does not exist
        self.listed = asyncio.Event()  # the first listing is in
        self.changed = asyncio.Condition()

    @property
    def gone(self) -> bool:
        """Deleted, or shut down and fenced: this node must not take VMs."""
        return self.state is None or self.state.out_of_service

    async def wait_for(self, predicate: Callable[[NodeState], bool]) -> NodeState:
        """Wait until the Node exists and ``predicate(state)`` holds."""
        async with self.changed:
            await self.changed.wait_for(lambda: self.state is not None and predicate(self.state))
            assert self.state is not None
            return self.state

    async def run(self) -> None:
        """List, then watch, for ever; a broken watch lists again."""
        selector = f"metadata.name={self._name}"
        while True:
            try:
                items, version = await self._kube.list_for_watch(NODES, selector)
                await self._set(node_state(items[0], self._rack_label) if items else None)
                self.listed.set()
                async for kind, node in self._kube.watch(NODES, selector, version):
                    await self._set(None if kind == "DELETED" else node_state(node, self._rack_label))
            except (KubeApiError, OSError, ValueError) as exc:
                logger.warning("watching the node failed; listing again", extra={"node": self._name,
                                                                                 "error": str(exc)})
                await asyncio.sleep(RETRY_SECONDS)

    async def _set(self, state: NodeState | None) -> None:
        if state != self.state:
            logger.info("node changed", extra={"node": self._name, "exists": state is not None,
                                               "outOfService": state is not None and state.out_of_service,
                                               "roles": [str(r) for r in state.roles] if state else []})
        async with self.changed:
            self.state = state
            self.changed.notify_all()
