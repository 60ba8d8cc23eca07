"""This agent's own Node, kept current by a watch (as kubelet and virt-handler keep theirs): its rack,
roles and allocatable, and whether it is gone (deleted, or tainted out-of-service). Offers are answered
from it, never from a fresh read of the API."""

import asyncio
import logging
from collections.abc import Callable

from rackmesh.informer import Informer
from rackmesh.kube_client import NODES, KubeClient, Selector
from rackmesh.nodes import NodeState, node_state

logger = logging.getLogger(__name__)


class OwnNode:
    def __init__(self, kube: KubeClient, name: str, rack_label: str) -> None:
        self._name = name
        self._rack_label = rack_label
        self.state: NodeState | None = None  # None while the Node does not exist
        self.informer = Informer(kube, NODES, Selector(fields=f"metadata.name={name}"), on_change=self._changed)
        self._change = asyncio.Event()  # set, and replaced, on every change of ``state``

    @property
    def listed(self) -> asyncio.Event:
        """Set once the first listing is in."""
        return self.informer.synced

    @property
    def gone(self) -> bool:
        """Deleted, or shut down and fenced: this node must not take VMs."""
        return self.state is None or self.state.out_of_service

    async def wait_for(self, predicate: Callable[[NodeState], bool]) -> NodeState:
        """Wait until the Node exists and ``predicate(state)`` holds."""
        while self.state is None or not predicate(self.state):
            await self._change.wait()
        return self.state

    async def run(self) -> None:
        await self.informer.run()

    def _changed(self) -> None:
        found = self.informer.get("", self._name)
        state = node_state(found, self._rack_label) if found is not None else None
        if state == self.state:
            return
        logger.info("node changed", extra={"node": self._name, "exists": state is not None,
                                           "outOfService": state is not None and state.out_of_service,
                                           "roles": [str(r) for r in state.roles] if state else []})
        self.state = state
        self._change.set()
        self._change = asyncio.Event()
