"""Two hosts (network namespaces) share one broadcast; one host's network is
cut mid-way (``ip link set eth0 down`` in its namespace) for longer than the
worker heartbeat TTL, then restored. PostgreSQL, Redis and the Telegram
sandbox live in a third namespace (bench/multihost.py builds it all and
deletes it at the end); the relay is sent every 5 s as beat does.

Expected: every row ends SENT and every chat received the message; the other
host delivered what the cut host held, and the sandbox received a message
twice only for rows the cut host held at the cut (sends in flight), each
flagged possible_duplicate; the cut host's worker comes back by itself.
"""

import subprocess

import pytest

from bench.multihost import CONCURRENCY, SHARED_LIMIT, Cluster, cut_network, unavailable_reason

pytestmark = [
    pytest.mark.fault,
    pytest.mark.redis_broker("its cluster (bench/multihost.py) runs its own Redis as the broker whatever "
                             "TEST_BROKER says, so the Redis runs cover it"),
]
MESSAGES = 120


def test_cutting_one_hosts_network_mid_broadcast_loses_nothing_and_duplicates_only_its_sends_in_flight():
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    with Cluster({"cut": MESSAGES}) as cluster:
        cluster.start_workers(cluster.topo.hosts, CONCURRENCY, **SHARED_LIMIT)
        result = cut_network(cluster)
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert not {cluster.topo.infra, *cluster.topo.hosts} & set(left.split()), left  # deleted at the end
    assert f" {cluster.topo.root_link}@" not in links
    assert result["held_at_cut"] > 0, "the cut host held nothing: the cut came too late to prove anything"
    assert result["statuses"] == {"SENT": MESSAGES}
    assert result["chats_received"] == MESSAGES
    assert result["duplicate_chats"] <= result["held_chats"]
    assert result["duplicate_chats"] <= result["flagged"]
    assert result["survived"]
    assert result["too_many"] == 0
