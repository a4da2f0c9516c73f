"""The HTTP door on a 3-node cluster of the real binary: requests through a follower are
forwarded to the leader, the leader's /v1/status shows each peer's match/next index and last
contact, leadership transfer through the admin API, and the 503/504 answers of a node that
lost its quorum. These tests need the replicated cluster: they fail (never skip) without it."""

import json
import signal
import time

import harness


def request(addr, method, path, body=None, headers=None, timeout=10.0):
    return harness.http_request(addr, method, path, body=body, headers=headers, timeout=timeout)


def error_of(body):
    return json.loads(body)["error"]


class ForwardingTest(harness.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cluster = harness.Cluster(nodes=3)
        cls.leader = cls.cluster.start_ready(timeout=20)

    @classmethod
    def tearDownClass(cls):
        cls.cluster.close()

    def followers(self):
        leader = self.cluster.wait_leader(timeout=20)
        return leader, [n for n in self.cluster.nodes if n is not leader]

    def test_writes_through_a_follower_reach_everyone(self):
        leader, followers = self.followers()
        f = followers[0]
        status, headers, body = request(f.http, "PUT", "/v1/kv/fwd?flags=9", body=b"via follower")
        self.assertEqual(status, 200, body)
        version = json.loads(body)["version"]
        self.assertEqual(headers["etag"], f'"{version}"')
        # Linearizable reads on every node see it at once.
        for n in self.cluster.nodes:
            status, headers, body = request(n.http, "GET", "/v1/kv/fwd")
            self.assertEqual((status, body), (200, b"via follower"), f"node {n.id}")
            self.assertEqual(headers["etag"], f'"{version}"')
            self.assertEqual(headers["x-raftkv-flags"], "9")
        # CAS and add through the other follower.
        g = followers[1]
        self.assertEqual(request(g.http, "PUT", "/v1/kv/fwd", body=b"x",
                                 headers={"If-Match": '"1"'})[0], 412)
        status, _, _ = request(g.http, "PUT", "/v1/kv/fwd", body=b"cas via follower",
                               headers={"If-Match": f'"{version}"'})
        self.assertEqual(status, 200)
        self.assertEqual(request(g.http, "PUT", "/v1/kv/fwd", body=b"y",
                                 headers={"If-None-Match": "*"})[0], 412)
        self.assertEqual(request(leader.http, "GET", "/v1/kv/fwd")[2], b"cas via follower")
        self.assertEqual(request(f.http, "DELETE", "/v1/kv/fwd")[0], 200)
        for n in self.cluster.nodes:
            self.assertEqual(request(n.http, "GET", "/v1/kv/fwd")[0], 404)

    def test_listing_on_a_follower(self):
        leader, followers = self.followers()
        for i in range(30):
            self.assertEqual(request(leader.http, "PUT", f"/v1/kv/fl{i:02d}", body=b"v")[0], 200)
        doc = json.loads(request(followers[0].http, "GET", "/v1/kv?prefix=fl&limit=1000")[2])
        self.assertEqual([k["key"] for k in doc["keys"]], [f"fl{i:02d}" for i in range(30)])
        self.assertIsNone(doc["next"])

    def test_leader_status_shows_each_peer(self):
        leader, followers = self.followers()
        request(leader.http, "PUT", "/v1/kv/st", body=b"v")

        def caught_up():
            doc = leader.status()
            members = {m["id"]: m for m in doc["members"]}
            ok = all(members[f.id]["match_index"] >= doc["commit_index"] > 0 for f in followers)
            return doc if ok else None

        doc = harness.wait_until(caught_up, 10, what="followers to catch up")
        self.assertEqual(doc["role"], "leader")
        self.assertEqual(len(doc["members"]), 3)
        for m in doc["members"]:
            for field in ("id", "peer", "http", "memcached", "cs733", "voter", "match_index",
                          "next_index", "last_contact_ms", "read_lease_ms"):
                self.assertIn(field, m)
            # Every member runs the defaults: tick_ms 10, election_ticks 30, leases on.
            self.assertEqual(m["read_lease_ms"], 210)
            node = self.cluster.nodes[m["id"] - 1]
            self.assertEqual(m["http"], f"{node.http[0]}:{node.http[1]}")
            if m["id"] != leader.id:
                self.assertGreater(m["next_index"], m["match_index"])
                self.assertGreaterEqual(m["last_contact_ms"], 0)
                self.assertLess(m["last_contact_ms"], 2000)
        for f in followers:
            fdoc = f.status()
            self.assertEqual(fdoc["role"], "follower")
            self.assertEqual(fdoc["leader_id"], leader.id)
            self.assertEqual(fdoc["term"], doc["term"])
            self.assertEqual(request(f.http, "GET", "/readyz")[0], 200)

    def test_transfer_leadership(self):
        leader, followers = self.followers()
        target = followers[0]
        status, _, body = request(leader.http, "POST",
                                  f"/v1/admin/transfer-leadership?to={target.id}")
        self.assertEqual(status, 200, body)
        self.assertTrue(json.loads(body)["ok"])
        harness.wait_until(lambda: self.cluster.wait_leader(timeout=5) is target, 15,
                           what=f"node {target.id} to lead")
        self.assertEqual(target.status()["role"], "leader")
        # Writes keep working through the old leader.
        self.assertEqual(request(leader.http, "PUT", "/v1/kv/after-transfer", body=b"ok")[0], 200)


class LostQuorumTest(harness.TestCase):
    def test_504_then_503_without_a_quorum(self):
        # A write times out (504, outcome unknown) long before the isolated leader gives up
        # its leadership (check-quorum after an election timeout); then no leader is known
        # (503 + Retry-After).
        with harness.Cluster(nodes=3, raft={"election_ticks": 150},
                             limits={"request_timeout_ms": 400}) as c:
            leader = c.wait_ready(timeout=30)
            self.assertEqual(request(leader.http, "PUT", "/v1/kv/q", body=b"before")[0], 200)
            followers = [n for n in c.nodes if n is not leader]
            for f in followers:
                f.signal(signal.SIGSTOP)
            try:
                status, headers, body = request(leader.http, "PUT", "/v1/kv/q", body=b"lost")
                self.assertEqual(status, 504, body)
                self.assertEqual(error_of(body), "timeout")

                def refused():
                    s, h, b = request(leader.http, "PUT", "/v1/kv/q", body=b"lost")
                    return (s, h, b) if s == 503 else None

                status, headers, body = harness.wait_until(refused, 20, interval=0.2,
                                                           what="503 from the isolated node")
                self.assertEqual(error_of(body), "no_leader")
                self.assertIn("retry-after", headers)
                # Not ready without a leader; reads cannot be linearizable either.
                harness.wait_until(lambda: request(leader.http, "GET", "/readyz")[0] == 503, 10,
                                   what="readyz 503")
                self.assertIn(request(leader.http, "GET", "/v1/kv/q")[0], (503, 504))
                self.assertEqual(request(leader.http, "GET", "/healthz")[0], 200)
            finally:
                for f in followers:
                    f.signal(signal.SIGCONT)
            c.wait_leader(timeout=30)
            harness.wait_until(lambda: request(leader.http, "PUT", "/v1/kv/q",
                                               body=b"after")[0] == 200, 30, interval=0.2,
                               what="writes to work again")
            self.assertEqual(request(leader.http, "GET", "/v1/kv/q")[2], b"after")


if __name__ == "__main__":
    harness.main()
