"""StorPool's own Python bindings (storpool==7.3.0, `spapi.Api`) against the emulator.

The bindings are used unchanged. Answers are also checked strictly against the binding
types (`sptypes`), because the bindings otherwise accept partially-parsed objects silently.
"""

import itertools
import time

import pytest
from storpool import spapi
from storpool import sptypes as sp
from storpool.sptype import spType

MIB = 1024 * 1024
_unique = itertools.count()


def uniq(prefix):
    """Names unique within the session, so tests do not depend on each other."""
    return "{}-{}-{}".format(prefix, int(time.time() * 1000) % 100000, next(_unique))


def strict(tp, raw):
    """Validates a raw answer against a binding type; raises on any field it rejects."""
    return spType(tp).handleVal(raw)


def wait_until(what, cond, deadline_s=30.0, poll_s=0.05):
    deadline = time.monotonic() + deadline_s
    while True:
        if cond():
            return
        assert time.monotonic() < deadline, "timed out waiting for: " + what
        time.sleep(poll_s)


def snapshot_by_gid(api, gid):
    return api.snapshotList("~" + gid)[0]


@pytest.fixture
def a(make_api):
    return make_api("zone-a")


@pytest.fixture
def b(make_api):
    return make_api("zone-b")


def test_locations_name_the_other_cluster(a, b):
    locs = strict({"locations": [sp.RemoteLocation]}, a.locationsList(returnRawAPIData=True))
    assert [l.name for l in locs["locations"]] == ["zone-b"]
    assert [l.name for l in b.locationsList()["locations"]] == ["zone-a"]


def test_dr_flow_snapshot_backup_fetch_failover_revert_delete(a, b):
    svc = uniq("svc")
    d0, d1 = svc + "-d0", svc + "-d1"
    for d in (d0, d1):
        res = a.volumeCreate({"name": d, "size": 2 * MIB, "tags": {"drengine.service": svc}})
        assert res.ok and res.globalId
    vols = strict([sp.VolumeSummary], a.volumesList(returnRawAPIData=True))
    assert {d0, d1} <= {v.name for v in vols}

    # A recovery point: a group snapshot of both disks at one instant, named and tagged.
    rp = a.snapshotCreateGroup({
        "volumes": [{"volume": d0, "name": d0 + ".rp1"}, {"volume": d1, "name": d1 + ".rp1"}],
        "tags": {"drengine.rp": "rp1"},
    })
    assert [s.snapshot for s in rp.snapshots] == [d0 + ".rp1", d1 + ".rp1"]
    snaps = strict([sp.SnapshotSummary], a.snapshotsList(returnRawAPIData=True))
    mine = {s.name: s for s in snaps if s.name.startswith(svc)}
    assert mine[d0 + ".rp1"].tags == {"drengine.rp": "rp1"}
    assert mine[d0 + ".rp1"].creationTimestamp == mine[d1 + ".rp1"].creationTimestamp
    assert a.volumeList(d0)[0].parentName == d0 + ".rp1"

    # Back both disks up to zone-b in one call; watch the transfer finish.
    backup = a.volumesGroupBackup({"location": "zone-b", "volumes": [d0, d1], "tags": {"drengine.rp": "rp2"}})
    gids = {vol: entry.snapshotGlobalId for vol, entry in backup.backups.items()}
    assert set(gids) == {d0, d1}
    copy = snapshot_by_gid(b, gids[d0])
    assert copy.recoveringFromRemote is True
    assert copy.backup is True
    assert copy.backupOfGlobalId == a.volumeList(d0)[0].globalId
    wait_until(
        "backups complete in zone-b",
        lambda: all(not snapshot_by_gid(b, g).recoveringFromRemote for g in gids.values()),
    )
    strict([sp.SnapshotSummary], b.snapshotsList(returnRawAPIData=True))

    # The pull path: export the named RP, list it remotely, fetch it; a repeat is objectExists.
    for d in (d0, d1):
        a.snapshotExport({"snapshot": d + ".rp1", "location": "zone-b"})
    exports = strict({"exports": [sp.Export]}, a.exportsList(returnRawAPIData=True))["exports"]
    assert {e.snapshot for e in exports} >= {d0 + ".rp1", d1 + ".rp1"}
    raw = b.snapshotsRemoteList(returnRawAPIData=True)["snapshots"]
    # The bindings type a remote snapshot's name like a volume name (no "@"), so the anonymous
    # snapshots that backups leave behind (`<volume>@<n>`, as StorPool names them) are
    # left out of the strict check.
    remote = strict([sp.RemoteSnapshot], [r for r in raw if "@" not in r["name"]])
    offered = {r.name: r for r in remote if r.location == "zone-a"}
    rp1_gid = offered[d0 + ".rp1"].remoteId
    assert offered[d0 + ".rp1"].tags == {"drengine.rp": "rp1"}
    b.snapshotFromRemote({"remoteLocation": "zone-a", "remoteId": rp1_gid, "tags": {"drengine.copy": "1"}})
    with pytest.raises(spapi.ApiError) as err:
        b.snapshotFromRemote({"remoteLocation": "zone-a", "remoteId": rp1_gid})
    assert err.value.name == "objectExists"
    wait_until("fetched copy complete", lambda: not snapshot_by_gid(b, rp1_gid).recoveringFromRemote)
    got = snapshot_by_gid(b, rp1_gid)
    assert got.globalId == rp1_gid and got.tags["drengine.rp"] == "rp1"
    remote = b.snapshotsRemoteList()["snapshots"]
    assert [r.localSnapshot for r in remote if r.remoteId == rp1_gid] == [got.name]

    # Failover in zone-b: a volume from the received snapshot, addressed by globalId.
    fo = svc + "-failover-d0"
    res = b.volumeCreate({"name": fo, "parent": "~" + rp1_gid, "tags": {"drengine.failover": svc}})
    assert res.ok
    fov = strict([sp.VolumeSummary], b.volumeList(fo, returnRawAPIData=True))[0]
    assert fov.parentName == got.name and fov.size == 2 * MIB

    # Revert the failover volume to the newer backup copy, then to the RP again.
    b.volumeRevert(fo, {"toSnapshot": "~" + gids[d0]})
    assert b.volumeList(fo)[0].parentName == snapshot_by_gid(b, gids[d0]).name
    b.volumeRevert(fo, {"toSnapshot": "~" + rp1_gid})

    # Clean up: give the remote snapshot up, delete volumes and snapshots.
    b.snapshotsRemoteUnexport({"remoteSnapshots": [{"location": "zone-a", "globalSnapshotId": rp1_gid}]})
    b.volumeDelete(fo)
    for g in list(gids.values()) + [rp1_gid]:
        b.snapshotDelete("~" + g)
    with pytest.raises(spapi.ApiError) as err:
        b.snapshotList("~" + rp1_gid)
    assert err.value.name == "objectDoesNotExist"
    for d in (d0, d1):
        a.snapshotUnexport({"snapshot": d + ".rp1", "all": True})
        a.volumeDelete(d)
        a.snapshotDelete(d + ".rp1")
    left = [s.name for s in a.snapshotsList() if s.name.startswith(svc) and not s.deleted]
    assert all("@" in n for n in left), left  # only the backups' local snapshots remain


def test_deleting_a_snapshot_a_volume_depends_on_marks_it_deleted(a):
    v = uniq("dep")
    a.volumeCreate({"name": v, "size": MIB})
    snap = a.snapshotCreate(v, {"name": v + ".s"})
    a.snapshotDelete(v + ".s")
    pending = strict([sp.SnapshotSummary], a.snapshotList("~" + snap.snapshotGlobalId, returnRawAPIData=True))[0]
    assert pending.deleted is True and pending.name == "*" + v + ".s"
    a.volumeDelete(v)
    with pytest.raises(spapi.ApiError) as err:
        a.snapshotList("~" + snap.snapshotGlobalId)
    assert err.value.name == "objectDoesNotExist"


def test_errors_use_storpool_names_and_envelope(a, make_api):
    with pytest.raises(spapi.ApiError) as err:
        a.volumeList(uniq("missing"))
    assert err.value.name == "objectDoesNotExist" and err.value.transient is False

    # Unknown fields are refused, as StorPool does (the bindings drop them, so call raw).
    with pytest.raises(spapi.ApiError) as err:
        a("POST", False, "VolumeCreate", {"name": uniq("x"), "size": MIB, "bogus": 1})
    assert err.value.name == "invalidParam"
    with pytest.raises(spapi.ApiError) as err:
        a("POST", False, "VolumeCreate", {"name": uniq("x")})
    assert err.value.name == "invalidParam"

    v = uniq("dup")
    a.volumeCreate({"name": v, "size": MIB})
    with pytest.raises(spapi.ApiError) as err:
        a.volumeCreate({"name": v, "size": MIB})
    assert err.value.name == "objectExists"
    a.volumeDelete(v)

    bad = make_api("zone-a", auth="wrong-token")
    with pytest.raises(spapi.ApiError) as err:
        bad.volumesList()
    assert err.value.name == "authError"


def test_transient_errors_are_retried_by_the_bindings(make_api, admin):
    admin("zone-a", "faults", {"transient_error_rate": 0.5, "seed": 3})
    try:
        flaky = make_api("zone-a", transientRetries=20, transientSleep=lambda retry: 0.005)
        names = [uniq("flaky") for _ in range(10)]
        for n in names:
            flaky.volumeCreate({"name": n, "size": MIB})
        listed = {v.name for v in flaky.volumesList()}
        assert set(names) <= listed
        stats = admin("zone-a", "stats")
        assert stats["clusters"]["zone-a"]["errors"].get("busy", 0) > 0
    finally:
        admin("zone-a", "faults", {"transient_error_rate": 0.0})
    for n in names:
        make_api("zone-a").volumeDelete(n)


def test_multicluster_form(make_api):
    mc = make_api("zone-a", multiCluster=True)
    v = uniq("mc")
    mc.volumeCreate({"name": v, "size": MIB})
    raw = mc.volumeList(v, returnRawAPIData=True)
    assert raw[0]["clusterName"] == "zone-a" and raw[0]["clusterId"]
    strict([sp.VolumeSummary], raw)
    mc.volumeDelete(v)
