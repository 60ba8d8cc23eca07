"""Keeping one DeploymentRequest true: the operator's level-triggered loop (one kopf daemon per request).

Each step compares what the spec asks (``replicas`` at ``generation``) with what is observed — the
request's VMs and their nodes (watch-fed indexes), and the coordinator's record in ZooKeeper — and acts:

- VMs on a node that is gone (deleted, or tainted out-of-service): delete them (their agent is gone too);
  they are then missing, and come back elsewhere under the same names.
- VMs the record does not place (left over by a round whose agent could not delete them): their node's
  agent deletes them, or the operator when that agent is gone.
- a round is due (no record yet; the spec changed; VMs the record places went missing; a waiting round's
  backoff ran out, or the world changed so that it could now fit): hand the order to a coordinator
  (steps 2-3). Placement itself stays the agents' negotiation.
- a round in flight whose coordinator no longer leads: hand the order to another; it resumes the record.

Then it writes the status (``progress.assess``) and an Event for each change worth telling.
"""

import dataclasses
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import kopf

from rackmesh import request_record
from rackmesh.kube_client import DEPLOYMENT_REQUESTS, VIRTUAL_MACHINES, KubeApiError
from rackmesh.labels import MAX_LABEL_VALUE, REQUEST_LABEL, Role
from rackmesh.logs import request_fields
from rackmesh.nodes import NodeState
from rackmesh.peer_client import PeerError
from rackmesh.protocol import NODE_REMOVALS, Order, Removal, RequestRef
from rackmesh.request_record import IN_FLIGHT, RequestRecord, Stage
from rackmesh.vm_names import vm_name
from rackmesh_operator import progress
from rackmesh_operator.handoff import HandoffFailed, compute_leaders, hand_over
from rackmesh_operator.progress import Blocker, Verdict, VmState
from rackmesh_operator.services import Services
from rackmesh_operator.status import STALLED_CONDITION, Phase
from rackmesh_operator.world import World

logger = logging.getLogger(__name__)
# How long a coordinator may take to record that it took an order before the order is handed again.
RECORD_GRACE_SECONDS = 10.0
# A round in flight whose record has not changed for this long is handed again (its coordinator resumes it).
STALE_ROUND_SECONDS = 60.0
# A coordinator's leadership ends with its ZooKeeper session (seconds), so looking once a second is enough.
COORDINATOR_CHECK_SECONDS = 1.0
RECORD_REREAD_SECONDS = 1.0
# A waiting round is retried after 1, 2, 4, ... seconds, at most 5 minutes; sooner when the world changes,
# but not more often than this.
BACKOFF_FIRST_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 300.0
NUDGE_SPACING_SECONDS = 1.0
# After no compute leader took an order (none elected yet, all unreachable), try again this much later.
HANDOFF_RETRY_SECONDS = 1.0
# Asking an agent (or the API) to delete a VM again, if it is still there.
DELETE_AGAIN_SECONDS = 5.0
BUSY_INTERVAL_SECONDS = 0.05
WAITING_INTERVAL_SECONDS = 0.25
SETTLED_INTERVAL_SECONDS = 0.5


def backoff(waits: int) -> float:
    return min(BACKOFF_MAX_SECONDS, BACKOFF_FIRST_SECONDS * 2 ** max(0, waits - 1))


@dataclasses.dataclass(frozen=True)
class Observed:
    """What one step sees: the record (and its znode version), the request's VMs, the nodes."""

    record: RequestRecord | None
    version: int
    vms: list[VmState]
    nodes: dict[str, NodeState]


class Reconciler:
    def __init__(self, services: Services, world: World, body: kopf.Body, vms: Callable[[], list[VmState]],
                 nodes: Callable[[], dict[str, NodeState]], instancetype_exists: Callable[[str], bool]) -> None:
        self.services = services
        self.world = world
        self.body = body  # kopf keeps a daemon's body current
        self._vms = vms
        self._nodes = nodes
        self._instancetype_exists = instancetype_exists
        self.timings: dict[str, float] = dict((body.get("status") or {}).get("timings") or {})
        self._record: tuple[RequestRecord, int] | None = None
        self._record_read_at = 0.0
        self._coordinator_checked_at = 0.0
        self._handed: tuple[Order, float] | None = None
        self._handoff_failed_at = -HANDOFF_RETRY_SECONDS
        self._waiting_seen: tuple[int, int] | None = None  # (WAITING record's version, world version then)
        self._blocked = False
        self._deleting: dict[str, float] = {}  # VM uid -> when its deletion was asked
        self._round_since: float | None = None
        self._written_at: float | None = None
        self._last_status: dict[str, Any] | None = None
        self._unready_told: frozenset[str] = frozenset()
        self._deploy_told: float | None = None  # the round (deploying_since) whose Deploying phase was told
        self._place_told: Order | None = None  # the handed order whose Placing phase was told

    # -- what the request asks

    @property
    def request(self) -> RequestRef:
        meta = self.body["metadata"]
        return RequestRef(meta["uid"], meta["namespace"], meta["name"])

    @property
    def generation(self) -> int:
        return int(self.body["metadata"].get("generation", 1))

    @property
    def replicas(self) -> int:
        return int(self.body["spec"]["replicas"])

    def order(self, lost: list[int] | None = None, basis: int = -1) -> Order:
        spec = self.body["spec"]
        return Order(self.request, self.replicas, spec["instancetype"], spec["image"], self.generation,
                     sorted(lost or []), basis)

    @property
    def phase(self) -> Phase | None:
        value = (self._last_status or self.body.get("status") or {}).get("phase")
        return Phase(value) if value else None

    @property
    def interval(self) -> float:
        """How soon to look again: often while a round runs, so the timings are close."""
        record = self._record[0] if self._record else None
        if self._blocked:
            return WAITING_INTERVAL_SECONDS
        if record is None or record.stage in IN_FLIGHT or self.phase in (Phase.PLACING, Phase.DEPLOYING):
            return BUSY_INTERVAL_SECONDS
        return WAITING_INTERVAL_SECONDS if record.stage == Stage.WAITING else SETTLED_INTERVAL_SECONDS

    # -- one step

    async def step(self) -> bool:
        """Observe, act, report; False once there is nothing left to do (a final failure)."""
        if self.phase is None:
            return True  # the create handler has not marked it Pending yet; its patch would overwrite ours
        seen = await self._observe()
        blocker = self._blocker(seen.record)
        self._blocked = blocker is not None
        if blocker is None:
            await self._act(seen)
            seen = dataclasses.replace(seen, vms=self._vms())
        unready = Counter(vm.node for vm in seen.vms if vm.node in seen.nodes and not seen.nodes[vm.node].ready)
        verdict = progress.assess(self.replicas, self.generation, seen.vms, seen.record, blocker, dict(unready))
        verdict = self._deploying_first(self._placing_first(verdict, seen.record), seen.record)
        await self._report(verdict, seen)
        return not (blocker is not None and blocker.final)

    def _placing_first(self, verdict: Verdict, record: RequestRecord | None) -> Verdict:
        """A round this operator handed says it is placing (status and Event) before it says it deploys or is
        ready, however fast the agents placed it."""
        handed = self._handed[0] if self._handed is not None else None
        if record is None or record.order != handed or self._place_told == record.order:
            return verdict
        if verdict.phase == Phase.PLACING:
            self._place_told = record.order
        elif verdict.phase in (Phase.DEPLOYING, Phase.READY) and record.deploying_since:
            self._place_told = record.order
            return dataclasses.replace(verdict, phase=Phase.PLACING, ready=(str(Phase.PLACING), verdict.ready[1]),
                                       reconciling=progress.round_activity(record))
        return verdict

    def _deploying_first(self, verdict: Verdict, record: RequestRecord | None) -> Verdict:
        """A round that wrote VMs says so (status and Event) before it says they are ready, even when they
        are ready at first sight."""
        since = record.deploying_since if record is not None else 0.0
        if self._deploy_told is None:
            self._deploy_told = since  # what happened before this operator started was told already
        if verdict.phase == Phase.DEPLOYING:
            self._deploy_told = since
        if verdict.phase != Phase.READY or not since or since == self._deploy_told:
            return verdict
        self._deploy_told = since
        assert record is not None
        written = len(record.indices())
        return dataclasses.replace(verdict, phase=Phase.DEPLOYING, reconciling=(
            "Deploying", f"{written} VMs written"))

    def _blocker(self, record: RequestRecord | None) -> Blocker | None:
        """What the spec itself stands in the way of, before any agent is asked. A missing instancetype
        blocks only a round that is due; VMs placed before it was deleted are left alone."""
        request, instancetype = self.request, self.body["spec"]["instancetype"]
        if len(request.name) > MAX_LABEL_VALUE:
            return Blocker("InvalidName", f"the request's name is {len(request.name)} characters long; its VMs "
                                          f"carry it in the label {REQUEST_LABEL}, which allows {MAX_LABEL_VALUE}",
                           final=True)
        round_due = record is None or record.stage == Stage.WAITING or record.order.generation != self.generation
        if round_due and not self._instancetype_exists(instancetype):
            return Blocker("UnknownInstancetype",
                           f"VirtualMachineClusterInstancetype {instancetype!r} does not exist (`kubectl get "
                           f"virtualmachineclusterinstancetypes` lists those that do); nothing was created; "
                           f"the request is placed once it exists")
        return None

    async def _observe(self) -> Observed:
        record = self._record[0] if self._record else None
        settled = record is not None and record.stage == Stage.SETTLED
        if not settled or time.monotonic() - self._record_read_at >= RECORD_REREAD_SECONDS:
            self._record = await request_record.read(self.services.zk, self.services.layout, self.request.uid)
            self._record_read_at = time.monotonic()
        record, version = self._record if self._record else (None, -1)
        return Observed(record, version, self._vms(), self._nodes())

    async def _act(self, seen: Observed) -> None:
        gone = [vm for vm in seen.vms if vm.node not in seen.nodes or seen.nodes[vm.node].out_of_service]
        if gone:
            await self._delete_on_gone_nodes(gone, seen.nodes)
            return
        record = seen.record
        if record is None:
            await self._hand(self.order(), record)
            return
        if record.stage in IN_FLIGHT:
            await self._watch_round(record)
            return
        placed = record.indices()
        strays = [vm for vm in seen.vms if vm.index not in placed]
        if strays:
            await self._remove_strays(strays, seen.nodes)
        lost = await self._lost(record, seen.vms) if record.stage == Stage.SETTLED else []
        changed = record.order.generation != self.generation or record.order.replicas != self.replicas
        if changed or lost or self.retry_due(record, seen.version):
            await self._hand(self.order(lost, seen.version), record)

    # -- acting

    async def _hand(self, order: Order, record: RequestRecord | None, avoid: frozenset[str] = frozenset()) -> None:
        """Hand ``order`` to a coordinator, unless the same order was handed moments ago and not recorded yet;
        ``record`` is what the order is compared with to tell of scaling and healing."""
        if self._handed is not None and not avoid:
            handed, at = self._handed
            if handed == order and time.monotonic() - at < RECORD_GRACE_SECONDS:
                return
        if time.monotonic() - self._handoff_failed_at < HANDOFF_RETRY_SECONDS:
            return
        try:
            if self.services.image_grants is not None:
                await self.services.image_grants.ensure(order.request.namespace)
            handoff = await hand_over(self.services, order, self._nodes(), avoid)
        except HandoffFailed as failure:
            self._handoff_failed_at = time.monotonic()
            logger.warning("no coordinator took the order", extra={**request_fields(order.request),
                                                                   "reason": failure.reason,
                                                                   "error": failure.message})
            return
        except KubeApiError as exc:  # the namespace's image access could not be written: its imports would fail
            self._handoff_failed_at = time.monotonic()
            logger.warning("image access not granted; handing the order over later", extra={
                **request_fields(order.request), "error": str(exc)})
            return
        self._handed = (order, time.monotonic())
        self._record_read_at = 0.0
        self.timings.setdefault("leaderLookup", handoff.leader_lookup_seconds)
        if record is not None and order.lost:
            names = ", ".join(vm_name(order.request.name, index) for index in order.lost)
            self._event("Healing", f"re-placing {len(order.lost)} lost VM{'s' * (len(order.lost) > 1)} under "
                                   f"the same names: {names}")
        elif record is not None and record.order.replicas != order.replicas:
            self._event("Scaling", f"scaling from {record.order.replicas} to {order.replicas} VMs "
                                   f"(generation {order.generation})")

    async def _watch_round(self, record: RequestRecord) -> None:
        if time.monotonic() - self._coordinator_checked_at < COORDINATOR_CHECK_SECONDS:
            return
        self._coordinator_checked_at = time.monotonic()
        leaders = {leader.node for leader in await compute_leaders(self.services, self._nodes())}
        if record.coordinator not in leaders:
            logger.warning("the coordinator no longer leads; handing the request to another",
                           extra={**request_fields(self.request), "coordinator": record.coordinator})
            await self._hand(self.order(), record, avoid=frozenset({record.coordinator}))
        elif time.time() - record.changed_at > STALE_ROUND_SECONDS:
            logger.warning("the round has not moved for a while; handing it again",
                           extra={**request_fields(self.request), "stage": str(record.stage)})
            self._handed = None
            await self._hand(self.order(), record)

    def retry_due(self, record: RequestRecord, version: int) -> bool:
        """A waiting round is retried when its backoff runs out, or soon after the world changes."""
        if record.stage != Stage.WAITING:
            return False
        if self._waiting_seen is None or self._waiting_seen[0] != version:
            self._waiting_seen = (version, self.world.version)
        world_then = self._waiting_seen[1]
        since = time.time() - record.changed_at
        nudged = self.world.version > world_then and since >= NUDGE_SPACING_SECONDS
        return nudged or since >= backoff(record.waits)

    async def _lost(self, record: RequestRecord, vms: list[VmState]) -> list[int]:
        """VMs the record places that do not exist: confirmed with a read, since the index may lag."""
        existing = {vm.index for vm in vms}
        lost = []
        for index in sorted(record.indices() - existing):
            try:
                await self.services.kube.get(VIRTUAL_MACHINES, vm_name(self.request.name, index),
                                             self.request.namespace)
            except KubeApiError as exc:
                if exc.status != 404:
                    raise
                lost.append(index)
        return lost

    async def _delete_on_gone_nodes(self, vms: list[VmState], nodes: dict[str, NodeState]) -> None:
        """The operator may delete VMs of a node whose agent is gone: a node that is gone has none."""
        due = self._due_for_deletion(vms)
        for vm in due:
            await self._delete(vm)
            logger.warning("deleted a VM of a node that is gone", extra={
                **request_fields(self.request), "vm": vm.name, "node": vm.node})
        for node, count in sorted(Counter(vm.node for vm in due).items()):
            why = "was deleted" if node not in nodes else "is out of service"
            self._event("NodeGone", f"node {node} {why}: its {count} VM{'s' * (count > 1)} are re-placed "
                                    f"elsewhere under the same names", warning=True)

    async def _remove_strays(self, vms: list[VmState], nodes: dict[str, NodeState]) -> None:
        """VMs the record does not place: their agent deletes them, or the operator if that agent is gone."""
        by_node: dict[str, list[VmState]] = {}
        for vm in self._due_for_deletion(vms):
            by_node.setdefault(vm.node, []).append(vm)
        for node, strays in by_node.items():
            member = (await self.services.directory.member(Role.COMPUTE, nodes[node].rack, node)
                      if node in nodes else None)
            if member is not None:
                try:
                    await self.services.peers.post(member, NODE_REMOVALS,
                                                   Removal(self.request, sorted(vm.index for vm in strays)))
                    continue
                except PeerError as exc:
                    logger.warning("the agent did not delete VMs left over; trying again later", extra={
                        **request_fields(self.request), "node": node, "error": str(exc)})
                    continue
            for vm in strays:
                await self._delete(vm)
        if by_node:
            logger.info("removing VMs no round places", extra={
                **request_fields(self.request), "vms": sorted(vm.name for vms in by_node.values() for vm in vms)})

    def _due_for_deletion(self, vms: list[VmState]) -> list[VmState]:
        now = time.monotonic()
        due = [vm for vm in vms if now - self._deleting.get(vm.uid, 0.0) >= DELETE_AGAIN_SECONDS]
        for vm in due:
            self._deleting[vm.uid] = now
        return due

    async def _delete(self, vm: VmState) -> None:
        try:
            await self.services.kube.delete(VIRTUAL_MACHINES, vm.name, self.request.namespace, uid=vm.uid)
        except KubeApiError as exc:
            if exc.status not in (404, 409):  # gone already, or the name holds another VM now
                raise

    # -- reporting

    async def _report(self, verdict: Verdict, seen: Observed) -> None:
        """Patch the status if anything changed; an Event when the phase or the stall reason changes."""
        current: dict[str, Any] = self._last_status or dict(self.body.get("status") or {})
        generation = self.generation if verdict.observed else int(current.get("observedGeneration") or 0)
        self._time(verdict, seen)
        racks = {name: node.rack for name, node in seen.nodes.items()}
        desired = {
            "phase": str(verdict.phase),
            "observedGeneration": generation,
            "replicas": len(seen.vms),
            "readyReplicas": sum(vm.ready for vm in seen.vms),
            "selector": f"{REQUEST_LABEL}={self.request.name}",
            "coordinator": seen.record.coordinator if seen.record else current.get("coordinator", ""),
            "placements": progress.placements(seen.vms, racks),
            "imageCopies": progress.image_copies(seen.vms, seen.record),
            "unanswered": seen.record.unanswered[:100] if seen.record else [],
            "timings": dict(self.timings),
            "conditions": progress.conditions(verdict, generation, current.get("conditions") or []),
        }
        self._tell_unready(seen)
        if all(current.get(key) == value for key, value in desired.items()):
            return
        meta = self.body["metadata"]
        await self.services.kube.patch(DEPLOYMENT_REQUESTS, meta["name"], {"status": desired},
                                       namespace=meta["namespace"], subresource="status")
        self._last_status = desired
        self._announce(verdict, current)
        if desired["unanswered"] and desired["unanswered"] != current.get("unanswered"):
            self._event("PlacedWithout", "placed without racks or agents that did not answer, even when asked "
                                         f"again: {'; '.join(desired['unanswered'])}", warning=True)

    def _announce(self, verdict: Verdict, before: dict[str, Any]) -> None:
        stalled_before = {c["type"]: c for c in before.get("conditions") or []}.get(STALLED_CONDITION) or {}
        if verdict.stalled is not None:
            reason, message = verdict.stalled
            if stalled_before.get("status") != "True" or stalled_before.get("reason") != reason:
                logger.info("request stalled", extra={**request_fields(self.request), "reason": reason,
                                                      "detail": message})
                self._event(reason, message, warning=True)
            return
        if str(verdict.phase) == before.get("phase"):
            return
        reason, message = verdict.reconciling or verdict.ready
        logger.info("request phase changed", extra={**request_fields(self.request), "phase": str(verdict.phase),
                                                    "reason": reason, "detail": message})
        self._event(str(verdict.phase), message if verdict.phase != Phase.READY else verdict.ready[1])

    def _tell_unready(self, seen: Observed) -> None:
        unready = frozenset(vm.node for vm in seen.vms if vm.node in seen.nodes and not seen.nodes[vm.node].ready)
        if unready and unready != self._unready_told:
            self._event("NodeNotReady", f"VMs on NotReady node{'s' * (len(unready) > 1)} {', '.join(sorted(unready))} "
                                        "are left in place: the node may only be cut off and still run them; they "
                                        "are re-placed only if the node is deleted or tainted "
                                        "node.kubernetes.io/out-of-service", warning=True)
        self._unready_told = unready

    def _event(self, reason: str, message: str, warning: bool = False) -> None:
        (kopf.warn if warning else kopf.info)(self.body, reason=reason, message=message)

    def _time(self, verdict: Verdict, seen: Observed) -> None:
        """``vmsWritten`` (deploying started -> every VM exists) and ``allReady`` (-> every VM ready), per round."""
        record = seen.record
        if record is None:
            return
        self.timings.update(record.timings)
        since = record.deploying_since or None
        if since != self._round_since:
            if self._round_since is not None:
                self.timings.pop("vmsWritten", None)
                self.timings.pop("allReady", None)
                self._written_at = None
            self._round_since = since
        if since is None:
            return
        now = time.time()
        if self._written_at is None and len(seen.vms) >= self.replicas:
            self._written_at = now
            self.timings.setdefault("vmsWritten", round(max(0.0, now - since), 3))
        if verdict.phase == Phase.READY and self._written_at is not None:
            self.timings.setdefault("allReady", round(now - self._written_at, 3))
