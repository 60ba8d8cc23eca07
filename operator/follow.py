"""Following one DeploymentRequest from Pending to Ready (or Failed): the operator's side of the flow.

Pending: check the instancetype, hand the order to a coordinator (steps 2-3) -> Placing.
Placing: watch the coordinator's record; hand the order again if the coordinator is gone.
Deploying/Ready: count the request's VMs from the index, keep status and timings true.
Failed: the record or a check says why; nothing more happens.
"""

import logging
import time
from collections.abc import Callable
from typing import Any

import kopf

from rackmesh import request_record
from rackmesh.kube_client import CLUSTER_INSTANCETYPES, DEPLOYMENT_REQUESTS, KubeApiError
from rackmesh.labels import MAX_LABEL_VALUE
from rackmesh.protocol import Order, RequestRef
from rackmesh.request_record import RequestRecord, Stage
from rackmesh_operator import progress
from rackmesh_operator.handoff import HandoffFailed, compute_leaders, hand_over
from rackmesh_operator.progress import VmState
from rackmesh_operator.services import Services
from rackmesh_operator.status import Phase

logger = logging.getLogger(__name__)
# How long a coordinator may take to record that it took the order before it is given to another.
RECORD_GRACE_SECONDS = 10.0
FOLLOW_INTERVAL_SECONDS = 0.25
DEPLOYING_INTERVAL_SECONDS = 0.05
SETTLED_INTERVAL_SECONDS = 2.0
RECORD_REREAD_SECONDS = 1.0
# A coordinator's leadership ends with its ZooKeeper session (seconds), so looking once a second is enough.
COORDINATOR_CHECK_SECONDS = 1.0


class Follower:
    def __init__(self, services: Services, body: kopf.Body, vms: Callable[[], list[VmState]]) -> None:
        self.services = services
        self.body = body
        self.vms = vms
        meta, spec = body["metadata"], body["spec"]
        self.order = Order(RequestRef(meta["uid"], meta["namespace"], meta["name"]), spec["replicas"],
                           spec["instancetype"], spec["image"])
        self.timings: dict[str, float] = dict((body.get("status") or {}).get("timings") or {})
        self._handed_at: float | None = None
        self._record: RequestRecord | None = None
        self._record_read_at = 0.0
        self._coordinator_checked_at = 0.0
        self._all_written_at: float | None = None
        self._last_status: dict[str, Any] | None = None

    @property
    def phase(self) -> Phase | None:
        value = (self._last_status or self.body.get("status") or {}).get("phase")
        return Phase(value) if value else None

    async def step(self) -> bool:
        """Advance the request as far as what is observed allows; False once there is nothing left to do."""
        if self.phase is None:
            return True  # the create handler has not marked it Pending yet; its patch would overwrite ours
        if self.phase == Phase.FAILED:
            return False
        record = await self._read_record()
        if record is None:
            await self._start()
        elif record.stage == Stage.FAILED:
            await self._update(Phase.FAILED, record, record.reason, record.message)
            return False
        elif record.stage in (Stage.PLACING, Stage.COMMITTED):
            await self._watch_coordinator(record)
            await self._update(Phase.PLACING, record, "Placing",
                               f"coordinator {record.coordinator} is placing {self._what()}")
        else:
            await self._follow_vms(record)
        return True

    @property
    def interval(self) -> float:
        """How soon to look again: often while VMs are being written, so the timings are close."""
        if self.phase in (Phase.DEPLOYING, Phase.PLACING):
            return DEPLOYING_INTERVAL_SECONDS
        return FOLLOW_INTERVAL_SECONDS if self.phase != Phase.READY else SETTLED_INTERVAL_SECONDS

    async def _read_record(self) -> RequestRecord | None:
        """The coordinator's record; once it says Deploying, it changes rarely and is re-read only now and then
        (the VMs, from the index, are looked at every time)."""
        fresh = time.monotonic() - self._record_read_at < RECORD_REREAD_SECONDS
        if self._record is not None and self._record.stage == Stage.DEPLOYING and fresh:
            return self._record
        found = await request_record.read(self.services.zk, self.services.layout, self.order.request.uid)
        self._record, self._record_read_at = (found[0] if found else None), time.monotonic()
        return self._record

    async def _start(self) -> None:
        """No record yet: check what the schema cannot, then hand the order over (again, if it got lost)."""
        if self._handed_at is not None and time.monotonic() - self._handed_at < RECORD_GRACE_SECONDS:
            return
        if len(self.order.request.name) > MAX_LABEL_VALUE:
            await self._update(Phase.FAILED, None, "InvalidName",
                               f"the request's name is {len(self.order.request.name)} characters long; its VMs carry "
                               f"it in the label rackmesh.io/request, which allows {MAX_LABEL_VALUE}")
            return
        if not await self._instancetype_exists():
            await self._update(Phase.FAILED, None, "UnknownInstancetype",
                               f"VirtualMachineClusterInstancetype {self.order.instancetype!r} does not exist "
                               f"(`kubectl get virtualmachineclusterinstancetypes` lists those that do); "
                               f"nothing was created")
            return
        await self._hand_over()

    async def _hand_over(self, avoid: frozenset[str] = frozenset()) -> None:
        try:
            handoff = await hand_over(self.services, self.order, avoid)
        except HandoffFailed as failure:
            await self._update(Phase.PENDING, None, failure.reason, failure.message)
            return
        self._handed_at = time.monotonic()
        self.timings["leaderLookup"] = handoff.leader_lookup_seconds
        coordinator = handoff.coordinator
        await self._update(Phase.PLACING, None, "Placing",
                           f"coordinator {coordinator.node} (rack {coordinator.rack}) is placing {self._what()}",
                           coordinator=coordinator.node)

    async def _watch_coordinator(self, record: RequestRecord) -> None:
        if time.monotonic() - self._coordinator_checked_at < COORDINATOR_CHECK_SECONDS:
            return
        self._coordinator_checked_at = time.monotonic()
        leaders = {leader.node for leader in await compute_leaders(self.services)}
        if record.coordinator not in leaders:
            logger.warning("the coordinator no longer leads; handing the request to another",
                           extra={"request": self.order.request.uid, "coordinator": record.coordinator})
            await self._hand_over(avoid=frozenset({record.coordinator}))

    async def _follow_vms(self, record: RequestRecord) -> None:
        vms = self.vms()
        now = time.time()
        if self._all_written_at is None and len(vms) >= self.order.replicas:
            self._all_written_at = now
            if record.deploying_since:
                self.timings["vmsWritten"] = round(max(0.0, now - record.deploying_since), 3)
        phase = progress.deployed_phase(self.order.replicas, vms)
        if phase == Phase.READY and self.phase not in (Phase.DEPLOYING, Phase.READY):
            phase = Phase.DEPLOYING  # say it was deployed (status and Event) before saying it is ready
        if phase == Phase.READY and "allReady" not in self.timings and self._all_written_at is not None:
            self.timings["allReady"] = round(now - self._all_written_at, 3)
        ready = sum(vm.ready for vm in vms)
        message = (f"{ready}/{self.order.replicas} VMs ready" if phase == Phase.READY else
                   f"{len(vms)}/{self.order.replicas} VMs written, {ready} ready")
        await self._update(phase, record, "Ready" if phase == Phase.READY else "Deploying", message, vms=vms)

    async def _instancetype_exists(self) -> bool:
        try:
            await self.services.kube.get(CLUSTER_INSTANCETYPES, self.order.instancetype)
        except KubeApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def _what(self) -> str:
        return f"{self.order.replicas} x {self.order.instancetype} from image {self.order.image}"

    async def _update(self, phase: Phase, record: RequestRecord | None, reason: str, message: str,
                      coordinator: str | None = None, vms: list[VmState] | None = None) -> None:
        """Patch the status if anything changed, and post an Event when the phase changes."""
        # We are the status's only writer: what we wrote last is newer than a body the watch has not updated yet.
        current: dict[str, Any] = self._last_status or dict(self.body.get("status") or {})
        vms = self.vms() if vms is None else vms
        generation = self.body["metadata"].get("generation", 1)
        if record is not None:
            self.timings.update(record.timings)
        desired = {
            "phase": str(phase),
            "observedGeneration": generation,
            "replicas": len(vms),
            "readyReplicas": sum(vm.ready for vm in vms),
            "coordinator": coordinator or (record.coordinator if record else current.get("coordinator", "")),
            "placements": progress.placements(vms, record),
            "imageCopies": progress.image_copies(vms, record),
            "timings": dict(self.timings),
            "conditions": progress.conditions(phase, reason, message, generation, current.get("conditions") or []),
        }
        if all(current.get(key) == value for key, value in desired.items()):
            return
        previous = current.get("phase")
        meta = self.body["metadata"]
        await self.services.kube.patch(DEPLOYMENT_REQUESTS, meta["name"], {"status": desired},
                                       namespace=meta["namespace"], subresource="status")
        self._last_status = desired
        if phase != previous:
            self._announce(phase, reason, message, record)

    def _announce(self, phase: Phase, reason: str, message: str, record: RequestRecord | None) -> None:
        uid = self.order.request.uid
        logger.info("request phase changed", extra={"request": uid, "phase": str(phase), "reason": reason,
                                                    "detail": message})
        if phase == Phase.FAILED:
            kopf.warn(self.body, reason=reason, message=message)
            return
        if phase == Phase.DEPLOYING and record is not None:
            holders = {holder.url for portion in record.portions for holder in portion.holders}
            message = (f"coordinator {record.coordinator} placed {self.order.replicas} VMs on "
                       f"{len(record.portions)} nodes in {len({p.rack for p in record.portions})} racks; "
                       f"the agents are writing them, disks from {len(holders)} image copies")
        kopf.info(self.body, reason=str(phase), message=message)
