"""docs/operations.md, "Changing the membership", run as written: each ```sh block of a
procedure goes to bash (with `raftkv` on PATH and the block's variables set to a real
cluster's values); the steps the prose describes between blocks (start the new node, stop
or kill one) are done here. Every `raftkv member` command must exit 0, and the cluster must
end with the membership the procedure promises and keep serving writes.

Procedures: grow 3 -> 5 ("Add a node" twice), shrink by removing the leader ("Remove a
node"), replace a kill -9'd node ("Replace a failed node")."""

import json
import os
import re
import subprocess
import unittest

import harness

DOC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs",
                   "operations.md")


def procedure_blocks(title):
    """The ```sh blocks of the `### <title>` section, in order."""
    with open(DOC) as f:
        text = f.read()
    start = text.index(f"### {title}\n")
    end = text.find("\n### ", start + 1)
    end2 = text.find("\n## ", start + 1)
    stops = [x for x in (end, end2) if x != -1]
    section = text[start:min(stops) if stops else len(text)]
    blocks = re.findall(r"```sh\n(.*?)```", section, flags=re.S)
    assert blocks, f"no sh blocks under '### {title}'"
    return blocks


def roles(node):
    status, _, body = harness.http_request(node.http, "GET", "/v1/members")
    assert status == 200, body
    return {m["id"]: m["voter"] for m in json.loads(body)["members"]}


class OperationsDoc(unittest.TestCase):
    def setUp(self):
        self.cluster = harness.Cluster(nodes=3, limits={"request_timeout_ms": 2000})
        self.cluster.start_ready()

    def tearDown(self):
        harness.close_after(self, self.cluster)

    def run_block(self, block, **variables):
        env = dict(os.environ)
        env["PATH"] = os.path.dirname(self.cluster.binary) + os.pathsep + env.get("PATH", "")
        env.update({k: str(v) for k, v in variables.items()})
        r = subprocess.run(["bash", "-euo", "pipefail", "-c", block], env=env,
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0,
                         f"block failed:\n{block}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}")
        return r.stdout

    def endpoint(self, node):
        return f"http://{node.http[0]}:{node.http[1]}"

    def new_node_variables(self, via, new):
        a = harness.Node._addr
        return dict(ENDPOINT=self.endpoint(via), NEW_ID=new.id, NEW_PEER=a(new.peer),
                    NEW_MEMCACHED=a(new.memcached), NEW_CS733=a(new.cs733),
                    NEW_HTTP=a(new.http))

    def add_node(self, via):
        add, promote = procedure_blocks("Add a node (grow 3 → 5)")
        new = self.cluster.add_node()
        variables = self.new_node_variables(via, new)
        self.run_block(add, **variables)
        new.start()  # step 2 of the procedure
        out = self.run_block(promote, **variables)
        self.assertIn(f"{new.id}", out)
        return new

    def test_grow_then_shrink_by_removing_the_leader(self):
        c = self.cluster
        leader = c.wait_leader()
        for _ in range(2):
            self.add_node(leader)
        self.assertEqual(roles(leader), {i: True for i in range(1, 6)})

        (remove,) = procedure_blocks("Remove a node (shrink)")
        leader = c.wait_leader()
        via = next(n for n in c.nodes if n is not leader)
        self.run_block(remove, ENDPOINT=self.endpoint(via), OLD_ID=leader.id)
        new_leader = c.wait_new_leader(leader)
        leader.stop()  # "then stop the removed node"
        self.assertEqual(set(roles(new_leader)), {1, 2, 3, 4, 5} - {leader.id})
        with harness.McClient(new_leader.memcached) as mc:
            self.assertEqual(mc.set("after-shrink", "ok"), "STORED")

    def test_replace_a_failed_node(self):
        c = self.cluster
        leader = c.wait_leader()
        dead = next(n for n in c.nodes if n is not leader)
        dead.kill()
        add, finish = procedure_blocks("Replace a failed node")
        new = c.add_node()
        variables = self.new_node_variables(leader, new)
        variables["DEAD_ID"] = dead.id
        self.run_block(add, **variables)
        new.start()  # "Start the new node, then:"
        out = self.run_block(finish, **variables)
        self.assertIn(str(new.id), out)
        live = [n for n in c.nodes if n.running()]
        leader = c.wait_leader(among=live)
        self.assertEqual(roles(leader), {n.id: True for n in live})
        # The failure budget is back: one more node may fail.
        victim = next(n for n in live if n is not leader)
        victim.kill()
        with harness.McClient(leader.memcached) as mc:
            self.assertEqual(mc.set("after-replace", "ok"), "STORED")


if __name__ == "__main__":
    harness.main()
