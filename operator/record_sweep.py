"""No request record outlives its request: the finalizer deletes a request's record, and this sweep
deletes any record whose DeploymentRequest no longer exists (a coordinator in the middle of a round may
write one after the finalizer ran). A record is deleted once it was found orphaned at two sweeps in a
row, so a request that is just being created is never mistaken for a gone one."""

import asyncio
import logging

from rackmesh import request_record
from rackmesh.kube_client import DEPLOYMENT_REQUESTS, KubeApiError
from rackmesh.logs import request_fields
from rackmesh_operator.services import Services

logger = logging.getLogger(__name__)


async def sweep_orphan_records(services: Services) -> None:
    """Run until cancelled, once every ``record_sweep_interval`` seconds."""
    suspects: set[str] = set()
    while True:
        await asyncio.sleep(services.settings.record_sweep_interval)
        try:
            suspects = await _sweep(services, suspects)
        except (KubeApiError, OSError) as exc:
            logger.warning("sweeping request records failed; trying again later", extra={"error": str(exc)})


async def _sweep(services: Services, suspects: set[str]) -> set[str]:
    """Delete the records orphaned now and at the last sweep; the orphans found now."""
    recorded = await request_record.uids(services.zk, services.layout)  # before the list: see the module
    live = {request["metadata"]["uid"] for request in await services.kube.list(DEPLOYMENT_REQUESTS)}
    orphans = recorded - live
    for uid in sorted(orphans & suspects):
        found = await request_record.read(services.zk, services.layout, uid)
        if found is None:  # deleted meanwhile (the request's finalizer)
            continue
        await request_record.delete(services.zk, services.layout, uid)
        logger.info("deleted the record of a request that is gone", extra=request_fields(found[0].order.request))
    return orphans - suspects
