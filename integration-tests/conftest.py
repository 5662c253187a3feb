import re
import shutil

import pytest

from harness import LOGS, Cluster, ZooKeeper


def _log_dir(request):
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid.split("::", 1)[-1])
    module = request.node.module.__name__
    return LOGS / module / name


@pytest.fixture(scope="session")
def zookeeper():
    """One ZooKeeper server for the session; tests isolate themselves with chroots."""
    zk = ZooKeeper(LOGS / "zookeeper").start()
    yield zk
    zk.destroy()


@pytest.fixture
def log_dir(request):
    """This test's log directory, emptied first: a log assertion must never pass on the
    lines of an earlier run."""
    d = _log_dir(request)
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.fixture
def cluster(zookeeper, log_dir):
    """A coordinator and one broker (id 1) in a fresh chroot."""
    c = Cluster(zookeeper, log_dir)
    c.start_coordinator()
    c.start_broker(1)
    yield c
    c.stop()


@pytest.fixture
def empty_cluster(zookeeper, log_dir):
    """A fresh chroot with nothing started; the test starts what it needs."""
    c = Cluster(zookeeper, log_dir)
    yield c
    c.stop()


@pytest.fixture
def zk_client(zookeeper):
    from kazoo.client import KazooClient
    client = KazooClient(hosts=zookeeper.connect)
    client.start(timeout=15)
    yield client
    client.stop()
    client.close()
