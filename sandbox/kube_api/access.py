"""What each user was allowed to do: the attributes of every authorized resource request, per user.

Tests compare what a component actually used with the RBAC it is given: ``used(user)`` is the set of
``(verb, apiGroup, resource)`` it was authorized for (``resource/subresource`` for subresources),
the tuples RBAC rules are written in. Served as JSON at :data:`PATH` (``system:masters`` only).
"""

from __future__ import annotations

import collections

from rackmesh_sandbox.kube_api.rbac import Attributes

PATH = "/debug/rackmesh/access"

Access = tuple[str, str, str]  # verb, API group, resource (with "/subresource")


class AccessRecord:
    def __init__(self) -> None:
        self._used: dict[str, set[Access]] = collections.defaultdict(set)

    def record(self, username: str, attrs: Attributes) -> None:
        """Note an authorized request (non-resource requests, such as discovery, are not kept)."""
        if attrs.resource_request:
            self._used[username].add((attrs.verb, attrs.api_group, attrs.qualified_resource))

    def used(self, username: str) -> set[Access]:
        return set(self._used.get(username, ()))

    def users(self) -> list[str]:
        return sorted(self._used)

    def to_json(self) -> dict[str, list[list[str]]]:
        """``{user: [[verb, group, resource], ...]}``, sorted, as served at :data:`PATH`."""
        return {user: [list(access) for access in sorted(self._used[user])] for user in self.users()}
