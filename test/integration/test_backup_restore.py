"""docs/operations.md, "Backup and restore", run as written: the ```sh blocks of "Take a
backup" and "Restore into a new cluster" go to bash (with `raftkv` on PATH and the blocks'
variables set to real values), the steps the prose describes between them (start every
node) are done here.

A 3-node cluster gets 500 keys; the backup block snapshots its leader and copies the newest
snapshot file; a NEW 3-node cluster (other ports, other data dirs) is restored from that one
file on every node and started while the old one keeps running. It must elect a leader in a
later term than the snapshot's, serve every key on every node, take new writes, list its own
members (not the old cluster's) and never talk to the old cluster. And: a data dir that is
not empty, a damaged snapshot file and a joining node's config are refused, writing
nothing."""

import glob
import json
import os
import re
import shutil
import subprocess
import tempfile
import unittest

import harness
from test_operations_doc import procedure_blocks

KEYS = 500


def value_of(i):
    return f"value-{i}-" + "x" * (i % 37)


def members(node):
    status, _, body = harness.http_request(node.http, "GET", "/v1/members")
    assert status == 200, body
    return json.loads(body)["members"]


class BackupRestore(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.old = harness.Cluster(nodes=3)
        cls.leader = cls.old.start_ready()
        cls.backup_dir = tempfile.mkdtemp(prefix="raftkv-backup-")
        try:
            with harness.McClient(cls.leader.memcached) as mc:
                for i in range(KEYS):
                    assert mc.set(f"key{i}", value_of(i)) == "STORED", i
            (cls.backup_block,) = procedure_blocks("Take a backup")
            (cls.restore_block,) = procedure_blocks("Restore into a new cluster")
        except Exception:
            cls.old.dump_logs()
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.old.close()
        shutil.rmtree(cls.backup_dir, ignore_errors=True)

    def setUp(self):
        self.new = None

    def tearDown(self):
        if self.new is not None:
            harness.close_after(self, self.new)

    def run_block(self, block, expect=0, **variables):
        env = dict(os.environ)
        env["PATH"] = os.path.dirname(self.old.binary) + os.pathsep + env.get("PATH", "")
        env.update({k: str(v) for k, v in variables.items()})
        r = subprocess.run(["bash", "-euo", "pipefail", "-c", block], env=env,
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, expect,
                         f"block:\n{block}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}")
        return r

    def raftkv(self, *args):
        return subprocess.run([self.old.binary, *args], capture_output=True, text=True,
                              timeout=120)

    def take_backup(self):
        """The backup block against the old cluster's leader; returns the copied file."""
        for old in glob.glob(os.path.join(self.backup_dir, "*")):
            os.remove(old)
        leader = self.old.wait_leader()
        r = self.run_block(self.backup_block,
                           ENDPOINT=f"http://{leader.http[0]}:{leader.http[1]}",
                           DATA_DIR=leader.data_dir, BACKUP_DIR=self.backup_dir)
        (snapshot,) = glob.glob(os.path.join(self.backup_dir, "snapshot-*.snap"))
        self.assertIn('"ok":true', r.stdout)
        self.assertIn(f"{snapshot}: ok: ", r.stdout)
        self.assertIn(f"{KEYS} items", r.stdout)
        return snapshot

    def restore(self, node, snapshot, expect=0):
        node.write_config()
        return self.run_block(self.restore_block, expect=expect, CONFIG=node.config_path,
                              SNAPSHOT=snapshot)

    def test_restore_into_a_new_cluster(self):
        snapshot = self.take_backup()
        index, term = map(int, re.fullmatch(r"snapshot-(\d+)-(\d+)\.snap",
                                            os.path.basename(snapshot)).groups())
        self.assertGreaterEqual(index, KEYS)

        self.new = harness.Cluster(nodes=3)
        for n in self.new.nodes:
            out = self.restore(n, snapshot).stdout
            self.assertIn(f"restored node {n.id}", out)
        self.new.start()  # step 3 of the procedure
        leader = self.new.wait_ready()
        self.assertGreater(leader.status()["term"], term)

        # Every key on every node, as it was written.
        keys = [f"key{i}" for i in range(KEYS)]
        for n in self.new.nodes:
            with harness.McClient(n.memcached) as mc:
                got = {}
                for start in range(0, KEYS, 50):
                    got.update(mc.get_multi(keys[start:start + 50]))
            self.assertEqual(len(got), KEYS, f"node {n.id}")
            for i in range(KEYS):
                self.assertEqual(got[f"key{i}"][0], value_of(i).encode(), f"node {n.id} key{i}")

        # New writes, through the leader and through a follower.
        follower = next(n for n in self.new.nodes if n is not leader)
        for via, key in ((leader, "after-restore-1"), (follower, "after-restore-2")):
            with harness.McClient(via.memcached) as mc:
                self.assertEqual(mc.set(key, "new"), "STORED")
        self.new.wait_converged()
        for n in self.new.nodes:
            with harness.McClient(n.memcached) as mc:
                self.assertEqual(mc.get("after-restore-2"), b"new")
                self.assertEqual(mc.get("key7"), value_of(7).encode())

        # The new cluster's members, not the old one's.
        addr = harness.Node._addr
        want = {n.id: addr(n.peer) for n in self.new.nodes}
        for n in self.new.nodes:
            got = members(n)
            self.assertEqual({m["id"]: m["peer"] for m in got}, want, f"node {n.id}")
            self.assertTrue(all(m["voter"] for m in got))
            self.assertEqual({m["memcached"] for m in got},
                             {addr(x.memcached) for x in self.new.nodes})

        # Another cluster id, and no frame ever crossed between the clusters; the old cluster
        # is untouched.
        def cluster_id(node):
            with open(os.path.join(node.data_dir, "cluster_id")) as f:
                return f.read()
        new_ids = {cluster_id(n) for n in self.new.nodes}
        self.assertEqual(len(new_ids), 1)
        self.assertNotIn(cluster_id(self.old.nodes[0]), new_ids)
        for n in self.old.nodes + self.new.nodes:
            self.assertNotIn("is not ours", n.log(), f"node {n.id} saw the other cluster")
            self.assertNotIn("refuses this node", n.log(), f"node {n.id}")
            self.assertNotIn("already knows this node", n.log(), f"node {n.id}")
        for n in self.new.nodes:
            self.assertNotIn("differs from the one", n.log())
        old_leader = self.old.wait_leader()
        self.assertEqual({m["peer"] for m in members(old_leader)},
                         {addr(n.peer) for n in self.old.nodes})
        with harness.McClient(old_leader.memcached) as mc:
            self.assertIsNone(mc.get("after-restore-1"))

        # A restored cluster restarts from its own state.
        for n in self.new.nodes:
            self.assertEqual(n.stop(), 0)
        self.new.start()
        self.new.wait_ready()
        with harness.McClient(self.new.nodes[2].memcached) as mc:
            self.assertEqual(mc.get("after-restore-1"), b"new")
            self.assertEqual(mc.get(f"key{KEYS - 1}"), value_of(KEYS - 1).encode())

    def test_a_data_dir_that_is_not_empty_is_refused(self):
        snapshot = self.take_backup()
        self.new = harness.Cluster(nodes=3)
        first, second = self.new.nodes[:2]
        # A data dir restored once holds a node's state: a second restore is refused.
        self.restore(first, snapshot)
        before = sorted(os.listdir(first.data_dir))
        r = self.restore(first, snapshot, expect=1)
        self.assertIn("not empty", r.stderr)
        self.assertIn(first.data_dir, r.stderr)
        self.assertEqual(sorted(os.listdir(first.data_dir)), before)
        # Any file at all makes it not empty; nothing is added to it.
        os.makedirs(second.data_dir)
        with open(os.path.join(second.data_dir, "notes.txt"), "w") as f:
            f.write("mine\n")
        r = self.restore(second, snapshot, expect=1)
        self.assertIn("not empty", r.stderr)
        self.assertEqual(os.listdir(second.data_dir), ["notes.txt"])
        # A running node's data dir (the old cluster's leader) is refused the same way.
        node = self.old.nodes[0]
        r = self.raftkv("restore", "--config", node.config_path, "--snapshot", snapshot)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("not empty", r.stderr)
        # An empty directory is fine (a systemd StateDirectory, a mount point).
        third = self.new.nodes[2]
        os.makedirs(third.data_dir)
        self.restore(third, snapshot)

    def test_a_damaged_snapshot_is_refused(self):
        snapshot = self.take_backup()
        self.new = harness.Cluster(nodes=3)
        node = self.new.nodes[0]
        node.write_config()
        size = os.path.getsize(snapshot)
        for offset in (20, size // 2, size - 1):  # in the header, the data, the last byte
            damaged = os.path.join(self.new.dir, f"damaged-{offset}.snap")
            shutil.copyfile(snapshot, damaged)
            with open(damaged, "r+b") as f:
                f.seek(offset)
                byte = f.read(1)
                f.seek(offset)
                f.write(bytes([byte[0] ^ 0x01]))
            r = self.raftkv("restore", "--check", "--snapshot", damaged)
            self.assertEqual(r.returncode, 1, f"offset {offset}: {r.stdout}")
            self.assertIn(damaged, r.stderr)
            r = self.restore(node, damaged, expect=1)
            self.assertIn(damaged, r.stderr)
            self.assertFalse(os.path.exists(node.data_dir), f"offset {offset}")
        # A truncated copy and a missing file are refused too, naming the file.
        truncated = os.path.join(self.new.dir, "truncated.snap")
        with open(snapshot, "rb") as src, open(truncated, "wb") as dst:
            dst.write(src.read(size - 100))
        for path in (truncated, os.path.join(self.new.dir, "missing.snap")):
            r = self.restore(node, path, expect=1)
            self.assertIn(path, r.stderr)
            self.assertFalse(os.path.exists(node.data_dir))
        # The intact file still restores.
        self.restore(node, snapshot)

    def test_bad_command_lines_write_nothing(self):
        snapshot = self.take_backup()
        self.new = harness.Cluster(nodes=3)
        node = self.new.nodes[0]
        node.join = True  # a joining node gets its state from the leader, not a backup
        node.write_config()
        for args in (["restore", "--config", node.config_path, "--snapshot", snapshot],
                     ["restore", "--snapshot", snapshot],
                     ["restore", "--config", node.config_path],
                     ["restore", "--check", "--config", node.config_path, "--snapshot",
                      snapshot]):
            r = self.raftkv(*args)
            self.assertEqual(r.returncode, 2, f"{args}: {r.stderr}")
            self.assertFalse(os.path.exists(node.data_dir), args)


if __name__ == "__main__":
    harness.main()
