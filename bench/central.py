"""The central baseline: one scheduler that reads the whole cluster from the API, decides, and writes the VMs.

It exists to be compared with rackmesh's decentralized placement on the same API, so it takes every
rule from the product rather than its own: an agent's idea of free room (allocatable minus the VMs pinned
to the node), an agent's offer (``min(wanted, fits)``), the coordinator's spread and naming
(``placement.spread``) and the agents' writer. What differs is only who knows what: here one process
LISTs every Node and every VM, as a central scheduler must.
"""

import asyncio
import dataclasses
import time
from collections import defaultdict
from typing import Any

from rackmesh.config import Settings
from rackmesh.kube_client import CLUSTER_INSTANCETYPES, NODES, VIRTUAL_MACHINES, KubeClient
from rackmesh.labels import NODE_LABEL, Role
from rackmesh.nodes import NodeState, node_state
from rackmesh.protocol import ImageHolder, NodeOffer, Order
from rackmesh.quantities import Resources
from rackmesh.request_record import Portion
from rackmesh.vm_fields import controller_uid
from rackmesh.vm_names import vm_index
from rackmesh.vm_room import instancetype_size
from rackmesh_node_agent.placement import spread
from rackmesh_node_agent.vms.writer import write_vms


class CentralPlacementFailed(Exception):
    """The cluster cannot take the whole order now (all or nothing: nothing was written)."""


@dataclasses.dataclass(frozen=True)
class CentralResult:
    """The decision (its reads included) apart from the writes, which any placement pays."""

    decision_seconds: float  # the LISTs and the decision
    write_seconds: float
    placed: dict[str, int]  # node -> VMs written there
    objects_read: int  # what the LISTs returned: every Node, VM and instancetype


async def place_centrally(kube: KubeClient, order: Order, holders: list[ImageHolder],
                          settings: Settings) -> CentralResult:
    """List the cluster, place the VMs the order still misses with rackmesh's spread rule, write them."""
    started = time.perf_counter()
    nodes, vms, instancetypes = await asyncio.gather(
        kube.list(NODES), kube.list(VIRTUAL_MACHINES), kube.list(CLUSTER_INSTANCETYPES))
    sizes = {item["metadata"]["name"]: instancetype_size(item) for item in instancetypes}
    if order.instancetype not in sizes:
        raise CentralPlacementFailed(f"instancetype {order.instancetype!r} does not exist")
    room, own = _room(order, nodes, vms, sizes, settings.rack_label)
    taken = {index for indices in own.values() for index in indices}
    wanted = max(0, order.replicas - len(taken))
    size = sizes[order.instancetype]
    offers = [NodeOffer(node=state.name, rack=state.rack, endpoint="", count=min(wanted, free.fits_times(size)))
              for state, free in room]
    existing = [Portion(node=state.name, rack=state.rack, endpoint="", indices=sorted(own[state.name]))
                for state, _ in room if own.get(state.name)]
    counts = spread.decide(offers, wanted, existing)
    if counts is None:
        raise CentralPlacementFailed(f"{wanted} VMs of {order.instancetype} do not fit: the {len(offers)} compute "
                                     f"nodes have room for {sum(offer.count for offer in offers)}")
    placing = spread.portions(offers, counts, spread.new_indices(taken, order.lost, wanted))
    decided = time.perf_counter()
    written = await asyncio.gather(*(write_vms(kube, order, portion.node, portion.indices, holders,
                                               settings.vm_disk_size) for portion in placing),
                                   return_exceptions=True)
    for result in written:
        if isinstance(result, BaseException):
            raise result
    return CentralResult(decision_seconds=decided - started, write_seconds=time.perf_counter() - decided,
                         placed={portion.node: len(portion.indices) for portion in placing},
                         objects_read=len(nodes) + len(vms) + len(instancetypes))


def _room(order: Order, nodes: list[dict[str, Any]], vms: list[dict[str, Any]], sizes: dict[str, Resources],
          rack_label: str) -> tuple[list[tuple[NodeState, Resources]], dict[str, list[int]]]:
    """Each compute node's free room, as its agent computes it (a node with a VM of an unknown instancetype
    has none: what it uses cannot be told), and the indices of the order's own VMs per node (their names are
    taken, and the spread counts them)."""
    used: dict[str, Resources] = defaultdict(Resources)
    unknown: set[str] = set()
    own: dict[str, list[int]] = defaultdict(list)
    for vm in vms:
        meta = vm["metadata"]
        node = (meta.get("labels") or {}).get(NODE_LABEL)
        if node is None:
            continue
        size = sizes.get(vm["spec"]["instancetype"]["name"])
        if size is None:
            unknown.add(node)
        else:
            used[node] += size
        index = vm_index(order.request.name, meta["name"])
        if index is not None and controller_uid(vm) == order.request.uid:
            own[node].append(index)
    states = (node_state(node, rack_label) for node in nodes)
    room = [(state, Resources() if state.name in unknown else state.allocatable - used[state.name])
            for state in states if Role.COMPUTE in state.roles and not state.out_of_service]
    return room, own
