"""Run the operator: kopf with rackmesh's handlers, cluster-wide."""

import asyncio

import kopf

from rackmesh.config import Settings
from rackmesh_operator import handlers  # noqa: F401  (registers the handlers)


def run_operator(settings: Settings) -> None:
    asyncio.run(kopf.operator(
        clusterwide=True,
        standalone=not settings.operator_peering,
        peering_name=settings.operator_peering or None,
        liveness_endpoint=settings.operator_liveness or None,
        memo=kopf.Memo(settings=settings),
    ))
