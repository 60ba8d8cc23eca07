"""The server-side apply engine as pure functions: field sets and their FieldsV1 form, types from CRD schemas
and built-ins, compare, merge, and ownership (update, apply, conflicts, pruning).

Expected values are structured-merge-diff's (sigs.k8s.io/structured-merge-diff: fieldpath, typed, merge) and
what kube-apiserver shows in ``managedFields``. Docs: https://kubernetes.io/docs/reference/using-api/server-side-apply/

Case matrix:
- FieldsV1: encode and decode are inverse (hypothesis over nested field, key and value paths); ``.`` marks a member
  with children; keys come sorted; keys of list items are JSON in sorted key order; undecodable tries refused.
- paths print as conflicts print them (``.spec.containers[name="nginx"].image``, ``[="a"]``).
- types: CRD ``x-kubernetes-list-type`` map/set/atomic, ``x-kubernetes-map-type: atomic``, preserve-unknown-fields,
  ObjectMeta; built-ins keyed by merge keys (containers by name, ports by port and protocol).
- field_set: structs' fields are not members, maps' keys are; atomic values are leaves; strict refuses undeclared
  fields and duplicate keys (with the server's texts); a map list item lacking all keys is refused.
- compare: added maps are members (``f:spec: {.: {}}`` on create); equal values compare to nothing.
- merge: map lists merge by key (the configuration's items in its order, live-only items after the item they
  followed); sets by value; atomic lists replaced; maps by key.
- update: the writer takes the fields it changed from others; removed fields leave every owner.
- apply: shared values are co-owned, different values conflict unless forced (the owner then loses them); a field
  the applier stops sending goes unless another manager owns it; a no-op apply returns no object.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rackmesh_sandbox.kube_api import field_types
from rackmesh_sandbox.kube_api import server_side_apply as ssa
from rackmesh_sandbox.kube_api.field_sets import (
    FieldsError,
    from_fields_v1,
    key_element,
    path_string,
    to_fields_v1,
    value_element,
)

WIDGET = field_types.from_openapi(
    {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "properties": {
                    "replicas": {"type": "integer"},
                    "ports": {
                        "type": "array",
                        "x-kubernetes-list-type": "map",
                        "x-kubernetes-list-map-keys": ["name", "protocol"],
                        "items": {
                            "type": "object",
                            "properties": {
                                "name": {"type": "string"},
                                "protocol": {"type": "string", "default": "TCP"},
                                "port": {"type": "integer"},
                            },
                        },
                    },
                    "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
                    "args": {"type": "array", "items": {"type": "string"}},
                    "selector": {
                        "type": "object",
                        "x-kubernetes-map-type": "atomic",
                        "additionalProperties": {"type": "string"},
                    },
                    "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                    "env": {"type": "object", "additionalProperties": {"type": "string"}},
                },
            }
        },
    },
    root=True,
)
V = "test.rackmesh.io/v1"


def widget(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": V, "kind": "Widget", "metadata": {"name": "w"}, "spec": spec}


def printed(paths: frozenset[Any] | set[Any]) -> set[str]:
    return {path_string(path) for path in paths}


# -- FieldsV1 --------------------------------------------------------------------------------------

_names = st.text("abcxyz.-/", min_size=1, max_size=4)
_elements = st.one_of(
    _names,
    st.builds(lambda n, v: key_element([("name", n), ("port", v)]), _names, st.integers(0, 9)),
    st.builds(value_element, st.one_of(_names, st.integers(-3, 3), st.booleans())),
)


@given(st.frozensets(st.lists(_elements, min_size=1, max_size=4).map(tuple), max_size=12))
def test_fields_v1_round_trip(paths: frozenset[tuple[Any, ...]]) -> None:
    assert from_fields_v1(dict(to_fields_v1(paths))) == paths


def test_fields_v1_shape() -> None:
    """As the server writes it: "." for a member with children, leaves as {}, keys in sorted order."""
    paths = frozenset(
        [
            ("spec",),
            ("spec", "replicas"),
            ("metadata", "labels", "a"),
            ("spec", "ports", key_element([("protocol", "TCP"), ("name", "http")])),
            ("spec", "ports", key_element([("protocol", "TCP"), ("name", "http")]), "port"),
            ("spec", "tags", value_element("blue")),
        ]
    )
    assert to_fields_v1(paths) == {
        "f:metadata": {"f:labels": {"f:a": {}}},
        "f:spec": {
            ".": {},
            "f:ports": {'k:{"name":"http","protocol":"TCP"}': {".": {}, "f:port": {}}},
            "f:replicas": {},
            "f:tags": {'v:"blue"': {}},
        },
    }
    assert list(to_fields_v1(paths)["f:spec"]) == [".", "f:ports", "f:replicas", "f:tags"]


@pytest.mark.parametrize("bad", [{"x:y": {}}, {"f:a": []}, {"k:[1]": {}}, {"v:{": {}}, "f:a"])
def test_undecodable_fields_v1(bad: Any) -> None:
    with pytest.raises(FieldsError):
        from_fields_v1(bad)


def test_paths_print_as_conflicts_do() -> None:
    assert path_string(("spec", "containers", key_element([("name", "nginx")]), "image")) == (
        '.spec.containers[name="nginx"].image'
    )
    assert path_string(("spec", "ports", key_element([("port", 80), ("protocol", "TCP")]))) == (
        '.spec.ports[port=80,protocol="TCP"]'
    )
    assert path_string(("metadata", "finalizers", value_element("a"))) == '.metadata.finalizers[="a"]'


# -- field sets ------------------------------------------------------------------------------------


def test_field_set_of_an_applied_configuration() -> None:
    """Structs' fields are not members (no "." in Apply entries); map keys, atomics and set items are."""
    config = widget(
        replicas=2,
        ports=[{"name": "http", "port": 80}],
        tags=["a"],
        args=["x", "y"],
        selector={"app": "w"},
        env={"A": "1"},
        extra={"deep": {"x": 1}},
    )
    config["metadata"]["labels"] = {"team": "a"}
    assert printed(ssa.field_set(config, WIDGET, strict=True)) == {
        ".apiVersion",
        ".kind",
        ".metadata.name",
        ".metadata.labels.team",
        ".spec.replicas",
        '.spec.ports[name="http",protocol="TCP"]',  # the key's schema default fills it in
        '.spec.ports[name="http",protocol="TCP"].name',
        '.spec.ports[name="http",protocol="TCP"].port',
        '.spec.tags[="a"]',
        ".spec.args",
        ".spec.selector",
        ".spec.env.A",
        ".spec.extra.deep",  # untyped maps' keys are members, as for any map
        ".spec.extra.deep.x",
    }


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"nope": 1}, ".spec.nope: field not declared in schema"),
        (
            {"ports": [{"name": "a", "port": 1}, {"name": "a", "port": 2}]},
            '.spec.ports: duplicate entries for key [name="a",protocol="TCP"]',
        ),
        ({"tags": ["a", "a"]}, '.spec.tags: duplicate entries for key [="a"]'),
        ({"tags": [{"a": 1}]}, ".spec.tags: element 0: associative list without keys has an element that's a map type"),
        ({"ports": ["x"]}, ".spec.ports: element 0: associative list with keys may not have non-map elements"),
    ],
)
def test_configurations_that_do_not_fit(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ssa.TypedError) as refused:
        ssa.field_set(widget(**spec), WIDGET, strict=True)
    assert str(refused.value) == message


def test_builtins_are_typed_by_field_names() -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "finalizers": ["f"]},
        "spec": {
            "nodeSelector": {"a": "b"},
            "containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80, "protocol": "TCP"}]}],
        },
    }
    assert printed(ssa.field_set(pod, field_types.BUILTIN, strict=True)) >= {
        '.metadata.finalizers[="f"]',
        ".spec.nodeSelector",
        '.spec.containers[name="c"].image',
        '.spec.containers[name="c"].ports[containerPort=80,protocol="TCP"].containerPort',
    }


# -- compare and merge -----------------------------------------------------------------------------


def test_compare_marks_new_maps_as_members() -> None:
    """A create compares with an empty object: maps that appear are owned themselves ("." in Update entries)."""
    changes = ssa.compare({"apiVersion": V, "kind": "Widget"}, widget(replicas=1, env={"A": "1"}), WIDGET)
    assert printed(changes.added) == {".metadata", ".metadata.name", ".spec", ".spec.replicas", ".spec.env",
                                      ".spec.env.A"}
    assert ssa.compare(widget(replicas=1), widget(replicas=1), WIDGET) == ssa.Comparison()
    changes = ssa.compare(widget(replicas=1, tags=["a"]), widget(replicas=2, tags=["b"]), WIDGET)
    assert (printed(changes.removed), printed(changes.modified), printed(changes.added)) == (
        {'.spec.tags[="a"]'}, {".spec.replicas"}, {'.spec.tags[="b"]'}
    )


def test_merge_lists_by_their_type() -> None:
    live = widget(
        ports=[{"name": "a", "port": 1}, {"name": "b", "port": 2}], tags=["x", "y"], args=["1", "2"], env={"A": "1"}
    )
    config = widget(ports=[{"name": "c", "port": 3}, {"name": "a", "port": 9}], tags=["z"], args=["3"], env={"B": "2"})
    merged = ssa.merge(live, config, WIDGET)
    assert merged["spec"] == {
        # c before a, as the configuration orders them; b, the live object's own, where it was after a
        "ports": [{"name": "c", "port": 3}, {"name": "a", "port": 9}, {"name": "b", "port": 2}],
        "tags": ["x", "y", "z"],
        "args": ["3"],
        "env": {"A": "1", "B": "2"},
    }


# -- ownership -------------------------------------------------------------------------------------


def owned(managers: ssa.Managers) -> dict[Any, set[str]]:
    return {manager: printed(o.paths) for manager, o in managers.items()}


def test_update_takes_the_fields_it_changed() -> None:
    live = widget(replicas=1, env={"A": "1", "B": "2"})
    managers = {"applier": ssa.Owned(ssa.field_set(live, WIDGET), V, True)}
    new = widget(replicas=5, env={"A": "1"})
    after = ssa.update(live, new, WIDGET, V, managers, "scaler")
    assert ".spec.replicas" in owned(after)["scaler"] and ".spec.replicas" not in owned(after)["applier"]
    assert ".spec.env.B" not in owned(after)["applier"]  # removed: nobody owns it now
    assert ".spec.env.A" in owned(after)["applier"]  # unchanged: stays with its owner


def test_apply_conflicts_shares_and_forces() -> None:
    live = widget(replicas=1, env={"A": "1"})
    managers = {"first": ssa.Owned(ssa.field_set(live, WIDGET), V, True)}
    with pytest.raises(ssa.Conflicts) as refused:
        ssa.apply(live, widget(replicas=2), WIDGET, V, managers, "second", force=False)
    assert [(manager, path_string(path)) for manager, path in refused.value.conflicts] == [
        ("first", ".spec.replicas")
    ]
    new, shared = ssa.apply(live, widget(replicas=1), WIDGET, V, managers, "second", force=False)
    assert new is None  # the same value: nothing changes, the field is co-owned
    assert ".spec.replicas" in owned(shared)["first"] and ".spec.replicas" in owned(shared)["second"]
    new, forced = ssa.apply(live, widget(replicas=2), WIDGET, V, managers, "second", force=True)
    assert new["spec"]["replicas"] == 2
    assert ".spec.replicas" not in owned(forced)["first"] and ".spec.replicas" in owned(forced)["second"]


def test_apply_removes_what_the_applier_stopped_sending() -> None:
    first = widget(replicas=1, env={"A": "1", "B": "2"}, tags=["x", "y"])
    managers = {"me": ssa.Owned(ssa.field_set(first, WIDGET), V, True)}
    managers["other"] = ssa.Owned(frozenset([("spec", "env", "B")]), V, False)
    new, after = ssa.apply(first, widget(replicas=1, tags=["x"]), WIDGET, V, managers, "me", force=False)
    assert new["spec"] == {"replicas": 1, "env": {"B": "2"}, "tags": ["x"]}  # B is the other's: it stays
    assert owned(after)["me"] >= {".spec.replicas", '.spec.tags[="x"]'}
