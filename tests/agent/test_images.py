"""Locating an image (flow steps 6-9) and serving its files, with real agents, real HTTPS (mutual TLS) and
real ZooKeeper.

Case matrix:
- a storage leader locates an image held in two racks: every holder, the first two in distinct racks;
  every storage leader gives the same answer
- a holder's URL serves the file over HTTPS without a client certificate (CDI importers have none): whole,
  and a Range request gives 206 with those bytes; ``PeerClient.answers`` finds it there, but not when the
  certificate behind the URL names another node than the holder
- an image with one holder (redundancy 2): 409 InsufficientImageReplicas with a message naming the holder;
  the same with a storage rack that does not answer: 503 StorageUnreachable naming that rack
- a storage agent that does not lead its rack: 409 NotLeader for rack and leader lookups, but it answers
  for itself; a compute agent: 409 NotStorage for every lookup
- malformed bodies (not JSON, a missing field, a bad image name): 400 BadMessage naming the problem
- no client certificate: 401 Unauthenticated for lookups; the operator's certificate: 403 Forbidden (only
  agents look images up); image files stay open; an unknown image, a file that is not ``<image>.img``, or a
  file asked of a compute agent: 404 ImageNotFound
- find_image on a compute agent: holders in distinct racks, steps 6-9 logged with the request's uid and
  namespace/name; it
  goes on to the next storage leader when the first is unreachable, answers with a certificate that does
  not name the leader recorded, or no longer leads (409 NotLeader); it follows a new leader after the old
  one stops; the image's shortage reaches it as InsufficientImageReplicas
- find_image with no storage leader at all: NoStorageLeaders
"""

import hashlib
import logging

import aiohttp
import pytest

from rackmesh import image_access, messages, registry, rendezvous, zk_async
from rackmesh.identity.names import Identity
from rackmesh.identity.names import Role as IdentityRole
from rackmesh.labels import Role
from rackmesh.peer_client import PeerError
from rackmesh.protocol import IMAGE_FILES, IMAGE_LOCATIONS, NODE_IMAGES, RACK_IMAGES, Holders, LocateAsk, RequestRef
from rackmesh.zk_layout import MemberRecord
from rackmesh_node_agent.images.locate import ImageLookupFailed, find_image
from rackmesh_sandbox.images import image_content
from rackmesh_sandbox.ports import free_port
from tests.agent.conftest import Mesh
from tests.support.agent_tls import Callers, agent_name
from tests.support.builders import make_topology
from tests.support.waiting import async_eventually

pytestmark = pytest.mark.zookeeper
IMAGE = "lob123-rhel-6.0"
RARE = "rare-image"


def lookup(uid: str) -> RequestRef:
    """The request an image lookup is for (the storage agents log it)."""
    return RequestRef(uid, "default", f"req-{uid}")


async def storage_leaders(mesh: Mesh) -> dict[str, MemberRecord]:
    directory = registry.Directory(mesh.zk, mesh.layout, watch=False)
    return {leader.rack: leader for leader in await directory.leaders(Role.STORAGE)}


async def storage_followers(mesh: Mesh) -> list[str]:
    leaders = {leader.node for leader in (await storage_leaders(mesh)).values()}
    return sorted(name for name, agent in mesh.agents.items() if agent.has_role(Role.STORAGE) and name not in leaders)


def ranks_first(record: MemberRecord, leaders: list[MemberRecord], node: str) -> bool:
    """Whether ``node`` asks ``record`` before the real ``leaders`` (find_image's rendezvous order)."""
    return rendezvous.ranked([*leaders, record], node, lambda leader: leader.node)[0] == record


async def publish_leader(mesh: Mesh, record: MemberRecord) -> MemberRecord:
    await zk_async.wait(mesh.zk.create_async(mesh.layout.leader(Role.STORAGE, record.rack), record.encode(),
                                             ephemeral=True, makepath=True))
    return record


async def publish_ghost_leader(mesh: Mesh, first_for: str, endpoint: str) -> MemberRecord:
    """A leader record of a made-up storage rack, named so that ``first_for`` ranks it first: it makes that
    compute agent's first storage leader one that cannot answer (``endpoint`` decides how; no agent has a
    certificate for a ghost's name, so at a real agent's endpoint the handshake refuses it)."""
    real = list((await storage_leaders(mesh)).values())
    candidates = (MemberRecord(f"ghost-{index}", "storage-ghost", Role.STORAGE, endpoint) for index in range(1000))
    return await publish_leader(mesh, next(record for record in candidates if ranks_first(record, real, first_for)))


async def raw_post(mesh: Mesh, node: str, route: str, body: bytes,
                   caller: Identity | None) -> tuple[int, dict[str, str]]:
    """POST ``body`` as it is to ``node``, over TLS presenting ``caller``'s certificate (None: none)."""
    async with aiohttp.ClientSession() as session, session.post(
            mesh.endpoint(node) + route, data=body, headers={"Content-Type": "application/json"},
            ssl=Callers(mesh.pki).context(caller), server_hostname=agent_name(node)) as response:
        return response.status, await response.json()


def anonymous(mesh: Mesh) -> aiohttp.ClientSession:
    """A client with no certificate of its own (a CDI importer) that trusts the rackmesh CA."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=Callers(mesh.pki).context(None)))


async def test_locate_returns_holders_in_distinct_racks_and_their_urls_serve_the_image(mesh):
    mesh = await mesh(make_topology().storage_racks(2, nodes=2), image_redundancy=2)
    leaders = await storage_leaders(mesh)
    ask = LocateAsk(image=IMAGE, redundancy=2, request=lookup("uid-locate"))
    agent = await mesh.as_agent("s-0-0")  # image lookups are for agents

    answers = [await agent.post(leader, IMAGE_LOCATIONS, ask, Holders) for leader in leaders.values()]
    assert answers[0] == answers[1]
    holders = answers[0].holders
    assert {holder.node for holder in holders} == {"s-0-0", "s-0-1", "s-1-0", "s-1-1"}
    assert holders[0].rack != holders[1].rack
    for holder in holders:
        assert holder.rack == mesh.agent(holder.node).node.rack
        assert holder.url == f"{mesh.endpoint(holder.node)}{IMAGE_FILES}/{IMAGE}.img"

    content = image_content(IMAGE)
    assert {holder.sha256 for holder in holders} == {hashlib.sha256(content).hexdigest()}  # published with each
    credential = await mesh.image_credential("default")
    async with anonymous(mesh) as importer:  # CDI importers carry no client certificate: a namespace's credential
        for holder in holders:
            name = agent_name(holder.node)
            async with importer.get(holder.url, server_hostname=name,
                                    headers={"Authorization": credential}) as response:
                assert response.status == 200
                assert await response.read() == content
            async with importer.get(holder.url, headers={"Range": "bytes=1000-1999", "Authorization": credential},
                                    server_hostname=name) as response:
                assert response.status == 206
                assert response.headers["Content-Range"] == f"bytes 1000-1999/{len(content)}"
                assert await response.read() == content[1000:2000]
    # How an agent checks a holder before writing VMs that boot from it: the certificate must name the holder.
    assert await agent.answers(holders[0].node, holders[0].url, 2.0)
    assert not await agent.answers(holders[1].node, holders[0].url, 2.0)


async def test_an_image_with_too_few_holders_is_refused_with_a_clear_message(mesh):
    topology = (make_topology().compute_racks(1, nodes=1).storage_racks(2, nodes=1)
                .node("s-rare", "storage-0", ["storage"], images=[IMAGE, RARE]))
    mesh = await mesh(topology, image_redundancy=2)
    leader = (await storage_leaders(mesh))["storage-1"]  # not the rack that holds the copy: it must ask
    expected = f"image {RARE} has 1 holder (s-rare in storage-0); 2 are required"
    compute = await mesh.as_agent("c-0-0")

    with pytest.raises(PeerError) as refused:
        await compute.post(leader, IMAGE_LOCATIONS, LocateAsk(RARE, 2, lookup("uid-rare")), Holders)
    assert (refused.value.status, refused.value.reason, refused.value.message) == (
        409, "InsufficientImageReplicas", expected)

    with pytest.raises(ImageLookupFailed) as failed:
        await find_image(mesh.agent("c-0-0"), RARE, 2, lookup("uid-rare"))
    assert (failed.value.reason, failed.value.message) == ("InsufficientImageReplicas", expected)

    # A storage rack that does not answer may hold the missing copy: not final, and it is named.
    await publish_ghost_leader(mesh, "c-0-0", f"https://127.0.0.1:{free_port()}")

    async def unreachable() -> PeerError:  # once the leader's directory has seen the new rack (a watch event)
        with pytest.raises(PeerError) as refused:
            await compute.post(leader, IMAGE_LOCATIONS, LocateAsk(RARE, 2, lookup("uid-rare")), Holders)
        assert (refused.value.status, refused.value.reason) == (503, "StorageUnreachable")
        return refused.value

    refusal = await async_eventually(unreachable, what="the ghost rack asked")
    assert refusal.message.endswith("storage racks that did not answer: storage-ghost")


async def test_lookups_are_refused_by_the_wrong_agents_and_bad_requests(mesh):
    mesh = await mesh(make_topology().compute_racks(1, nodes=1).storage_racks(1, nodes=2))
    (follower,) = await storage_followers(mesh)
    ask = LocateAsk(IMAGE, 1, lookup("uid-refused"))
    compute = await mesh.as_agent("c-0-0")

    for route in (RACK_IMAGES, IMAGE_LOCATIONS):
        with pytest.raises(PeerError) as refused:
            await compute.post(mesh.peer(follower), route, ask, Holders)
        assert (refused.value.status, refused.value.reason) == (409, "NotLeader")
    itself = await compute.post(mesh.peer(follower), NODE_IMAGES, ask, Holders)
    assert [holder.node for holder in itself.holders] == [follower]

    for route in (NODE_IMAGES, RACK_IMAGES, IMAGE_LOCATIONS):
        with pytest.raises(PeerError) as refused:
            await compute.post(mesh.peer("c-0-0"), route, ask, Holders)
        assert (refused.value.status, refused.value.reason) == (409, "NotStorage")
        assert "c-0-0 is not a storage node" in refused.value.message

    bad_name = messages.encode_bytes({**messages.encode(ask), "image": "Bad Name!"})
    for body, problem in ((b"{not json", "not JSON"), (b'{"image": "x"}', "redundancy: required"),
                          (bad_name, "is not an image name")):
        status, payload = await raw_post(mesh, follower, NODE_IMAGES, body, Identity.agent("c-0-0"))
        assert (status, payload["reason"]) == (400, "BadMessage")
        assert problem in payload["message"]


async def test_lookups_need_an_agent_certificate_and_image_files_a_namespace_credential(mesh):
    mesh = await mesh(make_topology().compute_racks(1, nodes=1).storage_racks(1, nodes=1))
    ask = messages.encode_bytes(LocateAsk(IMAGE, 1, lookup("uid-open")))
    for route in (NODE_IMAGES, RACK_IMAGES, IMAGE_LOCATIONS):
        status, payload = await raw_post(mesh, "s-0-0", route, ask, None)
        assert (status, payload["reason"]) == (401, "Unauthenticated"), route
        status, payload = await raw_post(mesh, "s-0-0", route, ask, Identity(IdentityRole.OPERATOR))
        assert (status, payload["reason"]) == (403, "Forbidden"), route
        assert "only agents call it" in payload["message"]
        status, _ = await raw_post(mesh, "s-0-0", route, ask, Identity.agent("c-0-0"))
        assert status == 200, route

    storage, name = mesh.endpoint("s-0-0"), agent_name("s-0-0")
    granted = await mesh.image_credential("team-a")
    forged = image_access.basic_header("team-a", "guessed")
    async with anonymous(mesh) as importer:
        file = f"{storage}{IMAGE_FILES}/{IMAGE}.img"
        for refused in ({}, {"Authorization": forged}, {"Authorization": image_access.basic_header("team-b", "x")},
                        {"Authorization": granted.replace("Basic", "Bearer")}):
            async with importer.get(file, server_hostname=name, headers=refused) as response:
                assert response.status == 401, refused
                assert response.headers["WWW-Authenticate"] == 'Basic realm="rackmesh-images"'
                assert (await response.json())["reason"] == "Unauthenticated"
        async with importer.get(file, server_hostname=name, headers={"Authorization": granted}) as response:
            assert response.status == 200
            assert await response.read() == image_content(IMAGE)
        for url, node in ((f"{storage}{IMAGE_FILES}/unknown-image.img", "s-0-0"),
                          (f"{storage}{IMAGE_FILES}/{IMAGE}", "s-0-0"), (f"{storage}{IMAGE_FILES}/..img", "s-0-0"),
                          (f"{mesh.endpoint('c-0-0')}{IMAGE_FILES}/{IMAGE}.img", "c-0-0")):
            async with importer.get(url, server_hostname=agent_name(node),
                                    headers={"Authorization": granted}) as response:
                assert response.status == 404, url
                assert (await response.json())["reason"] == "ImageNotFound"


async def not_leading_first(mesh: Mesh) -> tuple[str, MemberRecord]:
    """A compute agent, and a leader record (of a made-up rack) naming a storage agent that leads nothing,
    at its own endpoint (so its certificate fits), which that compute agent asks first.

    c-0-0 and c-1-0 rank s-1-0 and s-1-1 first among the storage nodes: whichever of the two does not lead
    storage-1 is some compute agent's first choice."""
    real, followers = list((await storage_leaders(mesh)).values()), await storage_followers(mesh)
    records = [MemberRecord(follower, "storage-ghost", Role.STORAGE, mesh.endpoint(follower)) for follower in followers]
    return next((compute, record) for compute in ("c-0-0", "c-1-0") for record in records
                if ranks_first(record, real, compute))


@pytest.mark.parametrize(("ghost", "reason"), [
    ("unreachable", "Unreachable"), ("another-certificate", "Unreachable"), ("not-leading", "NotLeader")])
async def test_find_image_goes_on_to_the_next_storage_leader(mesh, ghost, reason, caplog):
    mesh = await mesh(make_topology().compute_racks(2, nodes=1).storage_racks(2, nodes=2))
    # Its first choice cannot answer: nothing listens there; a real agent does, whose certificate does not
    # name the leader recorded (the handshake refuses it); or a storage agent that leads nothing does.
    if ghost == "not-leading":
        node, first = await not_leading_first(mesh)
        await publish_leader(mesh, first)
    else:
        node = "c-0-0"
        endpoint = f"https://127.0.0.1:{free_port()}" if ghost == "unreachable" else mesh.endpoint(
            (await storage_followers(mesh))[0])
        first = await publish_ghost_leader(mesh, node, endpoint)

    with caplog.at_level(logging.INFO, logger="rackmesh_node_agent.images.locate"):
        holders = await find_image(mesh.agent(node), IMAGE, 2, lookup("uid-find"))
    assert len(holders) == 4 and holders[0].rack != holders[1].rack

    steps = {(record.step, getattr(record, "leader", None)) for record in caplog.records
             if hasattr(record, "step") and getattr(record, "request", None) == "uid-find"
             and getattr(record, "deploymentRequest", None) == "default/req-uid-find"}
    assert {step for step, _ in steps} == {6, 7, 8, 9}
    assert (7, first.node) in steps  # asked first, then the next one
    failed = [(record.leader, record.reason) for record in caplog.records
              if record.getMessage() == "storage leader could not answer" and record.request == "uid-find"]
    assert failed == [(first.node, reason)]


async def test_find_image_follows_a_new_storage_leader(mesh):
    mesh = await mesh(make_topology().compute_racks(1, nodes=1).storage_racks(2, nodes=2))
    compute = mesh.agent("c-0-0")
    first = await find_image(compute, IMAGE, 2, lookup("uid-before"))
    assert {holder.rack for holder in first[:2]} == {"storage-0", "storage-1"}

    old = (await storage_leaders(mesh))["storage-0"].node
    await mesh.stop_agent(old)

    async def new_leader() -> bool:
        leader = (await storage_leaders(mesh)).get("storage-0")
        return leader is not None and leader.node != old and mesh.agent(leader.node).leads(Role.STORAGE)

    await async_eventually(new_leader, timeout=10, what="a new storage-0 leader")
    after = await find_image(compute, IMAGE, 2, lookup("uid-after"))
    assert old not in {holder.node for holder in after}
    assert len(after) == 3 and after[0].rack != after[1].rack


async def test_find_image_without_storage_leaders(mesh):
    mesh = await mesh(make_topology().compute_racks(1, nodes=1))
    with pytest.raises(ImageLookupFailed) as failed:
        await find_image(mesh.agent("c-0-0"), IMAGE, 2, lookup("uid-none"))
    assert failed.value.reason == "NoStorageLeaders"

