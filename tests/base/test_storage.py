"""storage and locations: the URI rule, /proc/mounts and the shared-storage rule of a
multi-node sweep."""

from __future__ import annotations

import pytest

from ninsweep.errors import NinsweepError
from ninsweep.locations import is_uri, local_path, uri_scheme
from ninsweep.storage import SHARED_STORAGE_ENV, check_storage_for_cluster, mount_of

MOUNTS = """\
/dev/root / ext4 rw,relatime 0 0
tmpfs /tmp tmpfs rw 0 0
fs-0123.efs.us-west-2.amazonaws.com:/ /mnt/ninsweep nfs4 rw,vers=4.1 0 0
s3fs /mnt/s3 fuse.s3fs rw 0 0
fuse-overlayfs /mnt/ovl fuse.fuse-overlayfs rw 0 0
server:/export /mnt/with\\040space nfs rw 0 0
server:/lustre /scratch lustre rw 0 0
nas:/share /mnt/over nfs4 rw 0 0
/dev/sdb1 /mnt/over ext4 rw 0 0
"""


@pytest.fixture()
def mounts(tmp_path, monkeypatch):
    monkeypatch.delenv(SHARED_STORAGE_ENV, raising=False)
    path = tmp_path / "mounts"
    path.write_text(MOUNTS)
    return str(path)


@pytest.mark.parametrize("storage", [
    "s3://bucket/ninsweep", "gs://bucket/x", "abfs://c@acct.dfs.core.windows.net/x",
    "/mnt/ninsweep/experiments/not-yet-created", "/mnt/ninsweep",
    "/mnt/s3/results", "/mnt/with space/exp", "/scratch/me/ninsweep",
    "file:///mnt/ninsweep/experiments",
])
def test_multi_node_accepts_shared_storage(storage, mounts):
    assert check_storage_for_cluster(storage, True, mounts_file=mounts) == storage


@pytest.mark.parametrize("storage, fs", [
    ("/home/me/ninsweep-results", "ext4"),
    ("/mnt/ninsweepX/experiments", "ext4"),  # a prefix of a mount point is not inside it
    ("/tmp/results", "tmpfs"),
    ("/mnt/ovl/results", "fuse.fuse-overlayfs"),
    ("/mnt/over/results", "ext4"),  # a local disk mounted over the NFS share wins
    ("file:///home/me/results", "ext4"),
])
def test_multi_node_refuses_node_local_storage(storage, fs, mounts):
    with pytest.raises(NinsweepError) as err:
        check_storage_for_cluster(storage, True, mounts_file=mounts)
    message = str(err.value)
    assert storage in message and fs in message and "\n" not in message
    assert SHARED_STORAGE_ENV in message


def test_multi_node_refuses_the_default_storage(mounts):
    with pytest.raises(NinsweepError, match="--storage"):
        check_storage_for_cluster(None, True, mounts_file=mounts)


def test_single_node_accepts_anything(mounts):
    for storage in (None, "/tmp/x", "relative/dir", "s3://b/x"):
        assert check_storage_for_cluster(storage, False, mounts_file=mounts) == storage


def test_shared_storage_declared_by_flag_or_environment(mounts, monkeypatch):
    assert check_storage_for_cluster("/data/shared", True, shared=True,
                                     mounts_file=mounts) == "/data/shared"
    monkeypatch.setenv(SHARED_STORAGE_ENV, "1")
    assert check_storage_for_cluster("/data/shared", True,
                                     mounts_file=mounts) == "/data/shared"
    with pytest.raises(NinsweepError):
        check_storage_for_cluster("/data/shared", True, shared=False, mounts_file=mounts)


def test_unreadable_mounts_file_means_not_shared(tmp_path, monkeypatch):
    monkeypatch.delenv(SHARED_STORAGE_ENV, raising=False)
    with pytest.raises(NinsweepError, match="unknown filesystem"):
        check_storage_for_cluster("/srv/x", True, mounts_file=str(tmp_path / "none"))


def test_a_sweep_on_several_nodes_applies_the_storage_rule(tmp_path, monkeypatch):
    from ninsweep.sweep import runner as sweep

    monkeypatch.delenv(SHARED_STORAGE_ENV, raising=False)
    monkeypatch.setattr(sweep, "check_schedulable", lambda *args, **kwargs: None)
    monkeypatch.setattr(sweep, "count_nodes", lambda: 2)
    with pytest.raises(NinsweepError, match=SHARED_STORAGE_ENV):
        sweep._check_cluster(None, str(tmp_path / "exp"), False, None)
    sweep._check_cluster(None, "s3://bucket/exp", False, None)
    monkeypatch.setattr(sweep, "count_nodes", lambda: 1)
    sweep._check_cluster(None, str(tmp_path / "exp"), False, None)


def test_one_rule_for_uris_and_file_paths():
    # The rule the storage check, submit's --storage check and the sweep's storage share.
    assert [uri_scheme(s) for s in ("s3://b/x", "GS://b", "abfs://c@a/x")] == ["s3", "gs", "abfs"]
    for local in ("/mnt/x", "runs", "file:///mnt/x", "FILE:///mnt/x", "/tmp/a://b"):
        assert uri_scheme(local) is None and not is_uri(local)
    assert local_path("file:///mnt/x") == local_path("FILE:///mnt/x") == "/mnt/x"
    assert local_path("/mnt/x") == "/mnt/x"


def test_real_proc_mounts_is_parsed():
    mount = mount_of("/")
    assert mount is not None and mount[0] == "/"
