"""The coordinator (in progress)."""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rackmesh_node_agent.agent import Agent


class Coordinator:
    def __init__(self, agent: "Agent") -> None:
        self.agent = agent

    async def stop(self) -> None:
        return None
