"""Runtime membership changes of the real binary (SPEC §8), under a client load checked for
linearizability and for lost acknowledged writes:

- grow 3 -> 5: add two learners through a follower (it forwards to the leader), start them
  with [cluster] state = "join", promote each once caught up; then shrink back to 3 by
  removing the leader (it hands over first, and the next leader proposes the removal) and
  one follower; restart every remaining node and find the same membership;
- remove the leader through its own HTTP door: the same hand-over, answered 200;
- replace a dead node: kill -9 a follower, add a fresh node under a new id, promote it,
  remove the dead one; the cluster keeps a full failure budget and loses nothing;
- the refusals of SPEC §8 (409 / 404 / 503), each named in the error body.

Every acknowledged write is on every remaining node at the end, and the history of the
register workload is linearizable."""

import json
import re
import sys
import time
import unittest

import harness

REQUEST_TIMEOUT_MS = 3000


def members_call(node, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} if data is not None else {}
    status, hdrs, reply = harness.http_request(node.http, method, path, body=data,
                                               headers=headers,
                                               timeout=REQUEST_TIMEOUT_MS / 1000 + 5)
    try:
        doc = json.loads(reply) if reply else {}
    except ValueError:
        doc = {"raw": reply.decode(errors="replace")}
    return status, hdrs, doc


def member_body(n):
    a = harness.Node._addr
    return {"id": n.id, "peer": a(n.peer), "memcached": a(n.memcached), "cs733": a(n.cs733),
            "http": a(n.http)}


class Membership(unittest.TestCase):
    def setUp(self):
        self.cluster = harness.Cluster(nodes=3, limits={"request_timeout_ms": REQUEST_TIMEOUT_MS},
                                       raft={"snapshot_entries": 2000})
        self.cluster.start_ready()

    def tearDown(self):
        harness.close_after(self, self.cluster)

    # --- helpers ------------------------------------------------------------------------

    def members(self, node):
        status, _, doc = members_call(node, "GET", "/v1/members")
        self.assertEqual(status, 200, doc)
        return doc

    def roles(self, node):
        doc = self.members(node)
        return {m["id"]: ("voter" if m["voter"] else "learner") for m in doc["members"]}

    def follower_of(self, leader, among):
        return next(n for n in among if n is not leader and n.running())

    def add(self, via, new):
        status, _, doc = members_call(via, "POST", "/v1/members", member_body(new))
        self.assertEqual(status, 201, doc)
        self.assertEqual(doc.get("id"), new.id, doc)

    def promote(self, via, new, leader):
        """Promotes `new` once the leader sees it caught up (the server also waits up to
        request_timeout_ms, answering 503 if it has not caught up by then)."""
        harness.wait_until(
            lambda: any(m["id"] == new.id and m["caught_up"]
                        for m in self.members(self.cluster.wait_leader(among=self.voters()))["members"]),
            60, interval=0.1, what=f"node {new.id} to catch up")
        deadline = time.monotonic() + 30
        while True:
            status, _, doc = members_call(via, "POST", f"/v1/members/{new.id}/promote")
            if status == 200 or time.monotonic() > deadline:
                break
            self.assertIn(status, (503, 504), doc)  # a leader change in between: retry
            time.sleep(0.2)
        self.assertEqual(status, 200, doc)

    def remove(self, via, node_id):
        status, _, doc = members_call(via, "DELETE", f"/v1/members/{node_id}")
        self.assertEqual(status, 200, doc)
        return doc

    def remove_leader(self, via, old):
        """Removes leader `old` through `via`. It must hand over first (SPEC §8): the next
        leader, not `old`, proposes the removal. Returns the answer and the next leader."""
        doc = self.remove(via, old.id)
        new_leader = self.cluster.wait_new_leader(old, timeout=15)
        self.assertNotEqual(new_leader.id, old.id)
        proposal = re.compile(rf"proposed a membership change at index \d+: remove {old.id}\b")
        self.assertIsNone(proposal.search(old.log()), "the leader proposed its own removal")
        self.assertIsNotNone(proposal.search(new_leader.log()),
                             "the next leader did not propose the removal")
        return doc, new_leader

    def voters(self):
        """Running nodes that the last membership view says are voters (or all running)."""
        view = getattr(self, "_voters", None)
        nodes = [n for n in self.cluster.live_nodes() if view is None or n.id in view]
        return nodes

    def finish(self, w, nodes):
        w.stop()
        self.cluster.wait_converged(timeout=30, nodes=nodes)
        missing = w.read_back(nodes=nodes)
        self.assertEqual(missing[:10], [], f"acknowledged writes lost: {w.summary()}")
        self.assertGreater(len(w.acked), 0, w.summary())
        result = w.check()
        self.assertTrue(result.ok, result.explain())

    # --- tests --------------------------------------------------------------------------

    def test_grow_to_five_then_shrink_by_removing_the_leader(self):
        c = self.cluster
        original = list(c.nodes)
        leader = c.wait_leader()
        self.assertEqual(self.members(leader)["members"][0]["voter"], True)
        with harness.Workload(c, clients=4, ack_writers=1, seed=13, prefix="grow") as w:
            w.wait_progress(100)
            for _ in range(2):
                new = c.add_node()
                via = self.follower_of(leader, original)
                self.add(via, new)
                self.assertEqual(self.roles(leader).get(new.id), "learner")
                new.start()
                self.promote(via, new, leader)
                leader = c.wait_leader(among=self.voters())
            self.assertEqual(self.roles(leader), {i: "voter" for i in range(1, 6)})
            self._voters = {1, 2, 3, 4, 5}
            w.wait_progress(w.ok_ops + 100)

            # Shrink: remove the leader through another node. It hands over first (SPEC
            # §8), and its successor proposes the removal of a mere follower.
            old = c.wait_leader(among=self.voters())
            _, new_leader = self.remove_leader(self.follower_of(old, self.voters()), old)
            self._voters.discard(old.id)
            # The removed node answers as a node without a leader and never disturbs.
            harness.wait_until(lambda: c.leader_view(old) == 0, 10, what="removed node to drop its leader")
            term_before = new_leader.status()["term"]
            old.stop()
            # And one follower.
            gone = self.follower_of(new_leader, self.voters())
            self.remove(new_leader, gone.id)
            self._voters.discard(gone.id)
            gone.stop()
            w.wait_progress(w.ok_ops + 100)
            remaining = self.voters()
            self.assertEqual(len(remaining), 3)
            self.finish(w, remaining)
            self.assertEqual(new_leader.status()["term"], term_before,
                             "an election happened after the leader's removal")

        # Restart every remaining node: the same membership comes back (from the log and
        # snapshots, not from the config files, which still list all five).
        expected = {n.id: "voter" for n in remaining}
        for n in remaining:
            self.assertEqual(n.stop(), 0)
        for n in remaining:
            n.restart()
        leader = c.wait_leader(among=remaining, timeout=20)
        for n in remaining:
            harness.wait_until(lambda n=n: self.roles(n) == expected, 20,
                               what=f"node {n.id} to show the membership after a restart")
        with harness.McClient(leader.memcached) as mc:
            self.assertEqual(mc.set("after-restart", "yes"), "STORED")

    def test_replace_a_dead_node(self):
        c = self.cluster
        leader = c.wait_leader()
        with harness.Workload(c, clients=4, ack_writers=1, seed=29, prefix="replace") as w:
            w.wait_progress(100)
            dead = self.follower_of(leader, c.nodes)
            dead.kill()
            new = c.add_node()
            self.add(leader, new)
            new.start()
            self.promote(leader, new, leader)
            self.remove(c.wait_leader(among=[n for n in c.live_nodes()]), dead.id)
            self._voters = {n.id for n in c.live_nodes()}
            leader = c.wait_leader(among=self.voters())
            self.assertEqual(sorted(self.roles(leader)), sorted(n.id for n in self.voters()))
            # The full failure budget is back: any one of the three may now fail.
            victim = self.follower_of(leader, self.voters())
            victim.kill()
            w.wait_progress(w.ok_ops + 100)
            victim.restart()
            self.finish(w, self.voters())

    def test_remove_the_leader_through_itself(self):
        """DELETE of the leader sent to the leader: it hands over, forwards the change to its
        successor and answers 200 with a configuration without it."""
        old = self.cluster.wait_leader()
        doc, new_leader = self.remove_leader(old, old)
        self.assertNotIn(old.id, [m["id"] for m in doc["members"]], doc)
        with harness.McClient(new_leader.memcached) as mc:
            self.assertEqual(mc.set("after-removal", "ok"), "STORED")

    def test_refusals(self):
        c = self.cluster
        leader = c.wait_leader()
        follower = self.follower_of(leader, c.nodes)
        a = harness.Node._addr
        # An id in use, an address in use, unknown ids, a voter promoted, bad bodies.
        cases = [
            ("POST", "/v1/members", {"id": 2, "peer": "127.0.0.1:1"}, 409, "member_exists"),
            ("POST", "/v1/members", {"id": 9, "peer": a(leader.peer)}, 409, "address_in_use"),
            ("DELETE", "/v1/members/9", None, 404, "unknown_member"),
            ("POST", "/v1/members/9/promote", None, 404, "unknown_member"),
            ("POST", "/v1/members/2/promote", None, 409, "not_learner"),
            ("POST", "/v1/members", {"id": 0, "peer": "127.0.0.1:1"}, 400, None),
        ]
        for method, path, body, want, code in cases:
            for via in (leader, follower):
                status, _, doc = members_call(via, method, path, body)
                self.assertEqual(status, want, f"{method} {path} via node {via.id}: {doc}")
                if code is not None:
                    self.assertEqual(doc.get("error"), code, doc)
        # GET through a follower relays the leader's view (only it knows the progress);
        # ?local=1 is the follower's own.
        with harness.McClient(follower.memcached) as mc:
            self.assertEqual(mc.set("progress", "x"), "STORED")
        relayed = self.members(follower)
        self.assertEqual(relayed["leader_id"], leader.id, relayed)
        self.assertTrue(all(m["match_index"] > 0 and m["caught_up"] for m in relayed["members"]),
                        relayed)
        status, _, local = members_call(follower, "GET", "/v1/members?local=1")
        self.assertEqual(status, 200, local)
        others = [m for m in local["members"] if m["id"] != follower.id]
        self.assertTrue(all(m["match_index"] == 0 for m in others), local)
        # A learner that never starts is never caught up: 503 with Retry-After after the
        # request timeout; and while it is a learner, another change waits for nothing.
        ghost = c.add_node()
        self.add(follower, ghost)
        started = time.monotonic()
        status, hdrs, doc = members_call(follower, "POST", f"/v1/members/{ghost.id}/promote")
        self.assertEqual(status, 503, doc)
        self.assertEqual(doc.get("error"), "not_caught_up", doc)
        self.assertIn("retry-after", hdrs)
        # The leader waits most of the request timeout for the learner before it answers.
        self.assertGreaterEqual(time.monotonic() - started, REQUEST_TIMEOUT_MS / 1000 * 0.6)
        # A learner counts for nothing: the three voters still commit.
        with harness.McClient(follower.memcached) as mc:
            self.assertEqual(mc.set("with-a-dead-learner", "ok"), "STORED")
        self.remove(leader, ghost.id)
        self.assertNotIn(ghost.id, self.roles(leader))
        # /metrics counts members by role.
        m = leader.metrics()
        self.assertEqual(m.get('raftkv_members{role="voter"}'), 3.0, m)
        self.assertEqual(m.get('raftkv_members{role="learner"}'), 0.0, m)


if __name__ == "__main__":
    harness.main()
