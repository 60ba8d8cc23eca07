"""Label and field selectors on lists.

Docs: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors
(equality-based ``=``, ``==``, ``!=``; set-based ``in``, ``notin``, exists, ``!``; comma = AND;
``!=`` and ``notin`` also match objects without the key) and
https://kubernetes.io/docs/concepts/overview/working-with-objects/field-selectors/
(``metadata.name``, ``metadata.namespace``, per-kind fields such as events' ``involvedObject.*``;
unsupported fields are an error).

Case matrix: every operator against objects with the key at each value and without the key;
combinations; malformed selectors (400); field selectors on custom resources and events.
"""

from __future__ import annotations

import pytest

from rackmesh_sandbox.kube_api.selectors import SelectorError, label_matcher
from tests.kube_api.conftest import DRS, Client, dr

OBJECTS = {
    "prod-web": {"env": "prod", "tier": "web"},
    "prod-db": {"env": "prod", "tier": "db"},
    "dev-web": {"env": "dev", "tier": "web"},
    "bare": {},
    "numbered": {"env": "qa", "rank": "7"},
}
SELECTIONS = [
    ("", ["bare", "dev-web", "numbered", "prod-db", "prod-web"]),
    ("env=prod", ["prod-db", "prod-web"]),
    ("env==prod", ["prod-db", "prod-web"]),
    ("env!=prod", ["bare", "dev-web", "numbered"]),  # includes objects without the key
    ("env in (prod,dev)", ["dev-web", "prod-db", "prod-web"]),
    ("env in (prod, dev)", ["dev-web", "prod-db", "prod-web"]),
    ("env notin (prod)", ["bare", "dev-web", "numbered"]),  # includes objects without the key
    ("tier", ["dev-web", "prod-db", "prod-web"]),
    ("!tier", ["bare", "numbered"]),
    ("env=prod,tier=web", ["prod-web"]),
    ("env in (prod,dev),tier notin (db)", ["dev-web", "prod-web"]),
    ("env,!tier", ["numbered"]),
    ("rank>5", ["numbered"]),
    ("rank<5", []),
    ("env=", []),  # an empty value matches only an empty label
]


@pytest.mark.parametrize(("selector", "expected"), SELECTIONS)
def test_label_selector(selector: str, expected: list[str]) -> None:
    matches = label_matcher(selector)
    assert (
        sorted(name for name, labels in OBJECTS.items() if matches({"metadata": {"labels": labels}}))
        == expected
    )


@pytest.mark.parametrize("selector", ["env in prod", "env=(x)", "=x", "env,,tier", "a b"])
def test_malformed_label_selector(selector: str) -> None:
    with pytest.raises(SelectorError):
        label_matcher(selector)


async def test_selectors_over_http(client: Client) -> None:
    for name, labels in OBJECTS.items():
        await client.create(DRS, {**dr(), "metadata": {"name": name, "labels": labels}})
    for selector, expected in SELECTIONS:
        listed = await client.get(DRS, params={"labelSelector": selector})
        assert [item["metadata"]["name"] for item in listed.body["items"]] == expected, selector
    reply = await client.get(DRS, params={"labelSelector": "env in prod"})
    assert reply.status == 400
    assert reply.body["reason"] == "BadRequest"


async def test_field_selectors(client: Client) -> None:
    for name in ("a", "b"):
        await client.create(DRS, dr(name))
    by_name = await client.get(DRS, params={"fieldSelector": "metadata.name=b"})
    assert [item["metadata"]["name"] for item in by_name.body["items"]] == ["b"]
    not_name = await client.get(DRS, params={"fieldSelector": "metadata.name!=b,metadata.namespace=default"})
    assert [item["metadata"]["name"] for item in not_name.body["items"]] == ["a"]
    reply = await client.get(DRS, params={"fieldSelector": "spec.image=x"})
    assert reply.status == 400
    assert reply.body["message"] == (
        '"spec.image" is not a known field selector: only "metadata.name", "metadata.namespace"'
    )


async def test_event_field_selectors(client: Client) -> None:
    events = "/api/v1/namespaces/default/events"
    for index, (kind, name) in enumerate(
        [("DeploymentRequest", "lob123"), ("DeploymentRequest", "other"), ("Node", "lob123")]
    ):
        await client.create(
            events,
            {
                "metadata": {"name": f"e{index}"},
                "reason": "Test",
                "type": "Normal",
                "involvedObject": {"kind": kind, "name": name, "namespace": "default"},
            },
        )
    selector = (
        "involvedObject.name=lob123,involvedObject.kind=DeploymentRequest,involvedObject.namespace=default"
    )
    listed = await client.get(events, params={"fieldSelector": selector})
    assert [item["metadata"]["name"] for item in listed.body["items"]] == ["e0"]
    assert (await client.get(events, params={"fieldSelector": "spec.x=y"})).status == 400
