"""Process tests of HTTPS on the HTTP door, the admin token, memcached 1.6's ASCII
authentication and mutual TLS between peers (docs/config.md: [http], [memcached], [tls];
docs/http-api.md: 401).

The memcached replies are compared byte for byte with the real memcached 1.6.18 started with
-Y on the same auth file, one request per round trip (memcached 1.6.18 drops all but the last
answer of a pipelined read in this mode; raftkv answers every request).
"""

import json
import os
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import time
import unittest

import harness

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TOKEN = "s3cret-admin-token-0123456789"


def make_certs(directory, nodes=1):
    subprocess.run([os.path.join(ROOT, "scripts", "make-certs.sh"), directory, str(nodes)],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def make_cas(prefix, names, nodes):
    """For a setUpClass: a new temp dir holding one throwaway CA (with certificates for
    nodes 1..nodes) in a subdir per name; skips the class loudly without openssl. Returns
    the temp dir and the CA dirs."""
    if shutil.which("openssl") is None:
        raise unittest.SkipTest("SKIPPED: the openssl command line tool is missing")
    tmp = tempfile.mkdtemp(prefix=prefix)
    dirs = [os.path.join(tmp, name) for name in names]
    for d in dirs:
        make_certs(d, nodes)
    return tmp, dirs


class SecureNode(harness.Node):
    """A node whose config gets extra TOML tables (cluster.extra: text, or a function of the
    node id giving the text)."""

    def write_config(self):
        super().write_config()
        extra = self.cluster.extra
        if callable(extra):
            extra = extra(self.id)
        if extra:
            with open(self.config_path, "a") as f:
                f.write("\n" + extra + "\n")


class SecureCluster(harness.Cluster):
    node_class = SecureNode

    def __init__(self, extra="", **kw):
        self.extra = extra
        super().__init__(**kw)


def wait_port(addr, timeout=15.0):
    harness.wait_until(lambda: harness.port_open(addr), timeout, what=f"{addr} open")


def talk(addr, requests, timeout=5.0):
    """Sends each request on one connection and reads its one-line answer (or b"" when the
    server closes). Returns the list of answers."""
    out = []
    with socket.create_connection(addr, timeout=timeout) as s:
        for r in requests:
            s.sendall(r)
            out.append(harness.recv_line_reply(s, timeout))
    return out


class Https(harness.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="raftkv-certs-")
        make_certs(cls.tmp)
        token_file = os.path.join(cls.tmp, "admin.token")
        with open(token_file, "w") as f:
            f.write(TOKEN + "\n")
        extra = "\n".join([
            "[http]",
            f'tls_cert = "{cls.tmp}/http.pem"',
            f'tls_key = "{cls.tmp}/http.key"',
            f'admin_token_file = "{token_file}"',
        ])
        cls.cluster = SecureCluster(nodes=1, extra=extra)
        cls.cluster.start_ready()
        cls.node = cls.cluster.nodes[0]
        cls.ctx = ssl.create_default_context(cafile=os.path.join(cls.tmp, "ca.pem"))

    @classmethod
    def tearDownClass(cls):
        cls.cluster.close()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def request(self, method, path, headers=None, ctx=None):
        import http.client
        conn = http.client.HTTPSConnection(self.node.http[0], self.node.http[1],
                                           context=ctx or self.ctx, timeout=10)
        try:
            conn.request(method, path, headers=headers or {})
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()

    def test_https_serves_and_verifies_against_the_ca(self):
        status, _, body = self.request("GET", "/v1/status")
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body)["id"], 1)
        # Keep-alive: two requests on one TLS connection.
        import http.client
        conn = http.client.HTTPSConnection(*self.node.http, context=self.ctx, timeout=10)
        try:
            for _ in range(2):
                conn.request("GET", "/healthz")
                r = conn.getresponse()
                self.assertEqual(r.status, 200)
                r.read()
        finally:
            conn.close()

    def test_plain_http_gets_no_answer(self):
        with socket.create_connection(self.node.http, timeout=10) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            try:
                data = s.recv(4096)
            except ConnectionResetError:
                data = b""
        self.assertFalse(data.startswith(b"HTTP/"), data)

    def test_tls_1_1_is_refused(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(os.path.join(self.tmp, "ca.pem"))
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        try:
            ctx.set_ciphers("ALL:@SECLEVEL=0")
        except ssl.SSLError:
            pass
        with socket.create_connection(self.node.http, timeout=10) as raw:
            with self.assertRaises((ssl.SSLError, ConnectionResetError)):
                with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                    s.recv(10)
        # Still serving afterwards.
        self.assertEqual(self.request("GET", "/healthz")[0], 200)

    def test_admin_token_401_401_200(self):
        status, headers, body = self.request("POST", "/v1/admin/snapshot")
        self.assertEqual(status, 401)
        self.assertEqual(json.loads(body)["error"], "unauthorized")
        self.assertTrue(headers.get("www-authenticate", "").startswith("Bearer"))
        status, _, body = self.request("POST", "/v1/admin/snapshot",
                                       {"Authorization": "Bearer not-the-token"})
        self.assertEqual(status, 401)
        self.assertEqual(json.loads(body)["error"], "unauthorized")
        status, _, body = self.request("POST", "/v1/admin/snapshot",
                                       {"Authorization": f"Bearer {TOKEN}"})
        self.assertEqual(status, 200, body)
        self.assertTrue(json.loads(body)["ok"])
        # The check comes before routing: an admin path with bad parameters is still a 401.
        status, _, _ = self.request("POST", "/v1/admin/transfer-leadership?to=x")
        self.assertEqual(status, 401)
        status, _, _ = self.request("POST", "/v1/members")
        self.assertEqual(status, 401)
        # Reads and the data API need no token.
        self.assertEqual(self.request("GET", "/v1/status")[0], 200)
        self.assertEqual(self.request("GET", "/v1/kv/nothing-here")[0], 404)
        # The token is never logged.
        self.assertNotIn(TOKEN, self.node.log())


class ConfigErrors(harness.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="raftkv-cfg-")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def run_binary(self, command, extra):
        path = os.path.join(self.tmp, "c.toml")
        with open(path, "w") as f:
            f.write(f'[node]\nid = 1\ndata_dir = "{self.tmp}/data"\n\n'
                    f'[listen]\nhttp = "127.0.0.1:{harness.free_port()}"\n\n{extra}\n')
        return subprocess.run([harness.BINARY, command, "--config", path], capture_output=True,
                              text=True, timeout=30)

    def test_missing_cert_file_is_exit_2_naming_the_key(self):
        r = self.run_binary("check-config", f'[http]\ntls_cert = "{self.tmp}/nope.pem"\n'
                                            f'tls_key = "{self.tmp}/nope.key"\n')
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("http.tls_cert", r.stderr)

    def test_cert_that_is_not_pem_is_exit_2_at_start(self):
        for name in ("bad.pem", "bad.key"):
            with open(os.path.join(self.tmp, name), "w") as f:
                f.write("not a certificate\n")
        # check-config loads it as serve (and a reload) would: files can be checked first.
        for command in ("serve", "check-config"):
            r = self.run_binary(command, f'[http]\ntls_cert = "{self.tmp}/bad.pem"\n'
                                         f'tls_key = "{self.tmp}/bad.key"\n')
            self.assertEqual(r.returncode, 2, (command, r.stderr))
            self.assertIn("http.tls_cert", r.stderr)

    def test_peer_tls_files_missing_or_of_another_node_are_exit_2(self):
        r = self.run_binary("check-config", f'[tls]\nca = "{self.tmp}/ca.pem"\n'
                                            f'cert = "{self.tmp}/nope.pem"\n'
                                            f'key = "{self.tmp}/nope.key"\n')
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("tls.ca", r.stderr)
        if shutil.which("openssl") is None:
            self.skipTest("SKIPPED: the openssl command line tool is missing")
        make_certs(self.tmp, 2)
        # Node 1 started with node 2's certificate: refused at start, not by every peer, and
        # by check-config.
        for command in ("serve", "check-config"):
            r = self.run_binary(command, f'[tls]\nca = "{self.tmp}/ca.pem"\n'
                                         f'cert = "{self.tmp}/node2.pem"\n'
                                         f'key = "{self.tmp}/node2.key"\n')
            self.assertEqual(r.returncode, 2, (command, r.stderr))
            self.assertIn("tls.cert", r.stderr)
            self.assertIn("raftkv-node-1", r.stderr)
        # Its own certificate passes, and check-config prints the effective config.
        r = self.run_binary("check-config", f'[tls]\nca = "{self.tmp}/ca.pem"\n'
                                            f'cert = "{self.tmp}/node1.pem"\n'
                                            f'key = "{self.tmp}/node1.key"\n')
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("[tls]", r.stdout)

    def test_missing_token_file_and_auth_file(self):
        r = self.run_binary("check-config", f'[http]\nadmin_token_file = "{self.tmp}/none"\n')
        self.assertEqual(r.returncode, 2)
        self.assertIn("http.admin_token_file", r.stderr)
        r = self.run_binary("check-config", f'[memcached]\nauth_file = "{self.tmp}/none"\n')
        self.assertEqual(r.returncode, 2)
        self.assertIn("memcached.auth_file", r.stderr)

    def test_check_config_never_prints_secrets(self):
        token = os.path.join(self.tmp, "t")
        with open(token, "w") as f:
            f.write(TOKEN + "\n")
        auth = os.path.join(self.tmp, "a")
        with open(auth, "w") as f:
            f.write("alice:pa55word\n")
        r = self.run_binary("check-config", f'[http]\nadmin_token_file = "{token}"\n\n'
                                            f'[memcached]\nauth_file = "{auth}"\n')
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("admin_token_file", r.stdout)
        self.assertNotIn(TOKEN, r.stdout)
        self.assertNotIn("pa55word", r.stdout)


def crc32c(data):
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def peer_hello(cluster_id, sender, receiver):
    """A well-formed hello frame (net/peer/frame.h, version 4) from `sender`: incarnation,
    data-dir generation, read lease (ms)."""
    payload = struct.pack("<QQQ", 0x1234, 0x5678, 210)
    head = b"RKVP" + struct.pack("<BBBBQQQQI", 4, 1, 0, 0, cluster_id, sender, receiver, 0,
                                 len(payload))
    body = head + payload
    return body + struct.pack("<I", crc32c(body))


def drain(sock, timeout=5.0):
    """Reads until the peer closes (or resets); returns what arrived."""
    sock.settimeout(timeout)
    got = b""
    try:
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                return got
            got += chunk
    except (ConnectionResetError, ssl.SSLError, BrokenPipeError):
        return got


def write_and_read_everywhere(test, cluster, key, value):
    """A set through the leader's memcached door, then a linearizable get on every node."""
    with harness.McClient(cluster.wait_leader().memcached) as c:
        test.assertEqual(c.set(key, value), "STORED")
    for n in cluster.nodes:
        with harness.McClient(n.memcached) as c:
            test.assertEqual(c.get(key), value, f"node {n.id}")


class PeerTls(harness.TestCase):
    """A 3-node cluster whose peers speak only mutual TLS (docs/config.md [tls])."""

    @classmethod
    def setUpClass(cls):
        cls.tmp, (cls.certs, cls.other) = make_cas("raftkv-peer-certs-", ("cluster", "other"), 3)

        def tls_table(node_id):
            return "\n".join([
                "[tls]",
                f'ca = "{cls.certs}/ca.pem"',
                f'cert = "{cls.certs}/node{node_id}.pem"',
                f'key = "{cls.certs}/node{node_id}.key"',
            ])

        cls.cluster = SecureCluster(nodes=3, extra=tls_table)
        cls.cluster.start_ready()

    @classmethod
    def tearDownClass(cls):
        cls.cluster.close()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def write_and_read_everywhere(self, key, value):
        # A read on a follower needs the leader's ReadIndex barrier: it crosses the TLS link.
        write_and_read_everywhere(self, self.cluster, key, value)

    def test_a_tls_cluster_elects_replicates_and_serves_reads_on_every_node(self):
        self.write_and_read_everywhere("tls-key", b"over mutual TLS")
        for n in self.cluster.nodes:
            self.assertIn("peer: mutual TLS (ca ", n.log())

    def test_strangers_are_refused_and_the_cluster_stays_healthy(self):
        target = self.cluster.nodes[1]  # node 2
        with open(os.path.join(target.data_dir, "cluster_id")) as f:
            cluster_id = int(f.read().strip(), 16)

        # Plain TCP speaking the peer protocol correctly gets nothing back.
        with socket.create_connection(target.peer, timeout=5) as s:
            s.sendall(peer_hello(cluster_id, 1, 2))
            self.assertEqual(drain(s), b"")

        def tls_client(ca_dir, cert_dir=None, node=1):
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.load_verify_locations(os.path.join(ca_dir, "ca.pem"))
            if cert_dir:
                ctx.load_cert_chain(os.path.join(cert_dir, f"node{node}.pem"),
                                    os.path.join(cert_dir, f"node{node}.key"))
            return ctx

        def tls_attempt(ctx, claim):
            """Handshake, hello claiming `claim`, then read: the node must never deliver,
            only close. Returns the application bytes received."""
            with socket.create_connection(target.peer, timeout=5) as raw:
                try:
                    with ctx.wrap_socket(raw) as s:
                        s.sendall(peer_hello(cluster_id, claim, 2))
                        return drain(s)
                except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
                    return b""  # refused during the handshake

        # No certificate; a certificate from another CA; the right CA but the CN of node 1
        # while claiming node 3.
        self.assertEqual(tls_attempt(tls_client(self.certs), 1), b"")
        self.assertEqual(tls_attempt(tls_client(self.certs, self.other, 1), 1), b"")
        self.assertEqual(tls_attempt(tls_client(self.certs, self.certs, 1), 3), b"")

        harness.wait_until(lambda: "claims to be node 3 but its certificate names node 1"
                           in target.log(), 10, what="wrong-certificate refusal logged")
        harness.wait_until(lambda: "TLS handshake failed" in target.log(), 10,
                           what="handshake refusal logged")
        # Counted by reason in /metrics.
        def refused(reason):
            _, _, body = harness.http_request(target.http, "GET", "/metrics")
            line = f'raftkv_peer_drops_total{{reason="{reason}"}} '
            return any(l.startswith(line) and int(l.split()[-1]) >= 1
                       for l in body.decode().splitlines())
        harness.wait_until(lambda: refused("tls_refused") and refused("wrong_certificate"), 10,
                           what="refusals counted in /metrics")
        self.write_and_read_everywhere("after-strangers", b"still replicated")


class MembersOverHttps(harness.TestCase):
    """A 3-node cluster whose HTTP doors serve HTTPS only, with an admin token. GET
    /v1/members on a follower still shows the leader's view, each member's progress
    included, since the follower asks the leader over the peer link and not through its HTTP
    door (docs/http-api.md); and `raftkv member` reaches the doors at https:// endpoints,
    checking their certificate (docs/operations.md)."""

    @classmethod
    def setUpClass(cls):
        cls.tmp, (cls.certs, cls.other_ca) = make_cas("raftkv-https-members-",
                                                      ("cluster", "other"), 1)
        cls.token_file = os.path.join(cls.tmp, "admin.token")
        with open(cls.token_file, "w") as f:
            f.write(TOKEN + "\n")
        extra = "\n".join(["[http]", f'tls_cert = "{cls.certs}/http.pem"',
                           f'tls_key = "{cls.certs}/http.key"',
                           f'admin_token_file = "{cls.token_file}"'])
        cls.cluster = SecureCluster(nodes=3, extra=extra)
        cls.cluster.start_ready()
        cls.ctx = ssl.create_default_context(cafile=os.path.join(cls.certs, "ca.pem"))

    @classmethod
    def tearDownClass(cls):
        cls.cluster.close()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def members(self, node, path="/v1/members"):
        import http.client
        conn = http.client.HTTPSConnection(*node.http, context=self.ctx, timeout=10)
        try:
            conn.request("GET", path)
            r = conn.getresponse()
            body = r.read()
            self.assertEqual(r.status, 200, body)
            return json.loads(body)
        finally:
            conn.close()

    def test_a_follower_shows_the_leaders_view(self):
        leader = self.cluster.wait_leader()
        follower = next(n for n in self.cluster.nodes if n is not leader)
        with harness.McClient(leader.memcached) as mc:
            self.assertEqual(mc.set("progress", "x"), "STORED")

        def relayed():
            doc = self.members(follower)
            progress = [m["match_index"] > 0 and m["caught_up"] for m in doc["members"]]
            return doc if len(progress) == 3 and all(progress) else None

        doc = harness.wait_until(relayed, 10, interval=0.1, what="the leader's view relayed")
        self.assertEqual(doc["leader_id"], leader.id, doc)
        # The same members as the leader shows, address for address.
        def shape(d):
            return [{k: v for k, v in m.items() if k not in ("match_index", "caught_up")}
                    for m in d["members"]]
        self.assertEqual(shape(doc), shape(self.members(leader)))
        # ?local=1 is the follower's own view: it knows nothing of the others' progress.
        local = self.members(follower, "/v1/members?local=1")
        others = [m for m in local["members"] if m["id"] != follower.id]
        self.assertTrue(others and all(m["match_index"] == 0 for m in others), local)

    def member_command(self, *args):
        return subprocess.run([self.cluster.binary, "member", *args], capture_output=True,
                              text=True, timeout=60, stdin=subprocess.DEVNULL)

    def test_the_member_command_speaks_https_and_checks_the_certificate(self):
        leader = self.cluster.wait_leader()
        follower = next(n for n in self.cluster.nodes if n is not leader)
        ca = ["--ca-file", os.path.join(self.certs, "ca.pem")]
        token = ["--token-file", self.token_file]
        port = follower.http[1]
        # The certificate names 127.0.0.1 and localhost: either host passes the check.
        for host in ("127.0.0.1", "localhost"):
            r = self.member_command("list", "--endpoint", f"https://{host}:{port}", *ca)
            self.assertEqual(r.returncode, 0, r.stderr)
            rows = [line.split() for line in r.stdout.splitlines()[1:]]
            self.assertEqual(sorted(int(row[0]) for row in rows if row and row[0].isdigit()),
                             [1, 2, 3], r.stdout)
        endpoint = f"https://127.0.0.1:{port}"
        # A certificate the client cannot verify: from a CA the system does not trust (no
        # --ca-file), or from another CA. Nothing is sent.
        for extra in ([], ["--ca-file", os.path.join(self.other_ca, "ca.pem")]):
            r = self.member_command("list", "--endpoint", endpoint, *extra)
            self.assertEqual(r.returncode, 1, (extra, r.stdout))
            self.assertIn(f"cannot connect to {endpoint}: TLS handshake failed", r.stderr)
            self.assertIn("--ca-file", r.stderr)
        # A certificate from the right CA that names another host (node 1's peer
        # certificate: DNS raftkv-node-1 only), served by a bare TLS listener.
        server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server.load_cert_chain(os.path.join(self.certs, "node1.pem"),
                               os.path.join(self.certs, "node1.key"))
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen(1)

            def serve_one():
                try:
                    conn, _ = listener.accept()
                    with server.wrap_socket(conn, server_side=True) as tls:
                        tls.recv(1)
                except OSError:
                    pass  # the client gives up during the handshake

            thread = threading.Thread(target=serve_one, daemon=True)
            thread.start()
            wrong = f"https://127.0.0.1:{listener.getsockname()[1]}"
            r = self.member_command("list", "--endpoint", wrong, *ca)
            thread.join(timeout=10)
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn(f"cannot connect to {wrong}: TLS handshake failed", r.stderr)
        # Plain HTTP to the HTTPS door gets no answer.
        r = self.member_command("list", "--endpoint", f"http://127.0.0.1:{port}")
        self.assertEqual(r.returncode, 1, r.stdout)
        # A change over HTTPS: the token is required (401 without it), and then accepted.
        add = ["add", "--endpoint", endpoint, "--id", "9", "--peer", "127.0.0.1:1", *ca]
        r = self.member_command(*add)
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("401", r.stderr)
        r = self.member_command(*add, *token)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("member 9 added as a learner", r.stdout)
        r = self.member_command("remove", "--endpoint", endpoint, "--id", "9", *ca, *token)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn(9, [m["id"] for m in self.members(follower)["members"]])


class ReloadOnSighup(harness.TestCase):
    """SIGHUP re-reads the certificates and keys, the admin token and the memcached users
    (docs/config.md, "Reloading"): a 3-node cluster with mutual TLS between peers, HTTPS and
    an admin token moves to a new CA, a new token and memcached authentication without a
    restart; a reload whose files do not load changes nothing."""

    @classmethod
    def setUpClass(cls):
        cls.tmp, (cls.old, cls.new) = make_cas("raftkv-reload-", ("old", "new"), 3)
        cls.auth = False  # [memcached] auth_file, once the test turns it on

        def files(node_id):
            """Each node's own copies, in a dir of its own that the test rewrites."""
            return os.path.join(cls.tmp, f"node{node_id}")

        def install(source, node_id, token, cas=None):
            """The node's certificates, key and token from `source`; its CA file the
            concatenation of the `cas` dirs' CA certificates (default: source's)."""
            d = files(node_id)
            os.makedirs(d, exist_ok=True)
            for name in (f"node{node_id}.pem", f"node{node_id}.key", "http.pem", "http.key"):
                shutil.copy(os.path.join(source, name), os.path.join(d, name))
            with open(os.path.join(d, "ca.pem"), "w") as out:
                for ca_dir in cas or [source]:
                    with open(os.path.join(ca_dir, "ca.pem")) as f:
                        out.write(f.read())
            with open(os.path.join(d, "admin.token"), "w") as f:
                f.write(token + "\n")
            with open(os.path.join(d, "memcached.auth"), "w") as f:
                f.write("bob:pw2\n")

        def tables(node_id):
            d = files(node_id)
            lines = ["[tls]", f'ca = "{d}/ca.pem"', f'cert = "{d}/node{node_id}.pem"',
                     f'key = "{d}/node{node_id}.key"', "", "[http]",
                     f'tls_cert = "{d}/http.pem"', f'tls_key = "{d}/http.key"',
                     f'admin_token_file = "{d}/admin.token"']
            if cls.auth:
                lines += ["", "[memcached]", f'auth_file = "{d}/memcached.auth"']
            return "\n".join(lines)

        cls.files, cls.install = staticmethod(files), staticmethod(install)
        for i in (1, 2, 3):
            install(cls.old, i, TOKEN)
        cls.cluster = SecureCluster(nodes=3, extra=tables)
        cls.cluster.start_ready()

    @classmethod
    def tearDownClass(cls):
        cls.cluster.close()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def https(self, node, method, path, ca_dir, token=None, body=None):
        import http.client
        ctx = ssl.create_default_context(cafile=os.path.join(ca_dir, "ca.pem"))
        conn = http.client.HTTPSConnection(*node.http, context=ctx, timeout=10)
        try:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            conn.request(method, path, body=body, headers=headers)
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()

    def reload(self, node, mark):
        """SIGHUP, then waits for the log line that says how it went (`mark`)."""
        before = node.log().count(mark)
        node.signal(signal.SIGHUP)
        harness.wait_until(lambda: node.log().count(mark) > before, 10,
                           what=f"node {node.id}: {mark}")
        self.assertTrue(node.running(), f"node {node.id} ended on SIGHUP")

    def test_certificates_token_and_users_change_without_a_restart(self):
        c = self.cluster
        c.wait_leader()
        one = c.nodes[0]
        new_token = "n3w-admin-token-9876543210abcdef"

        # A reload whose files do not load changes nothing, and the node serves on.
        with open(os.path.join(self.files(1), "http.pem"), "w") as f:
            f.write("not a certificate\n")
        self.reload(one, "reload refused, nothing changed")
        self.assertEqual(self.https(one, "GET", "/healthz", self.old)[0], 200)
        # Nor does a peer certificate of the right CA that names another node.
        two = c.nodes[1]
        for ext in ("pem", "key"):
            shutil.copy(os.path.join(self.old, f"node1.{ext}"),
                        os.path.join(self.files(2), f"node2.{ext}"))
        self.reload(two, "reload refused, nothing changed")
        self.assertIn("raftkv-node-1", two.log().split("reload refused, nothing changed")[-1])

        # docs/config.md's move to a new CA, one reload of every node per step: trust both
        # CAs; present certificates of the new one (with a new token and memcached users);
        # trust the new CA only.
        for n in c.nodes:
            self.install(self.old, n.id, TOKEN, cas=[self.old, self.new])
        for n in c.nodes:
            self.reload(n, "reloaded ")
        type(self).auth = True
        for n in c.nodes:
            self.install(self.new, n.id, new_token, cas=[self.old, self.new])
            n.write_config()
        for n in c.nodes:
            self.reload(n, "reloaded ")
        for n in c.nodes:
            self.install(self.new, n.id, new_token)
        for n in c.nodes:
            self.reload(n, "reloaded ")

        # HTTPS: a new connection gets the new certificate (the old CA no longer verifies it).
        self.assertEqual(self.https(one, "GET", "/healthz", self.new)[0], 200)
        with self.assertRaises(ssl.SSLError):
            self.https(one, "GET", "/healthz", self.old)
        # The admin token: the old one is refused, the new one accepted.
        self.assertEqual(self.https(one, "POST", "/v1/admin/snapshot", self.new, TOKEN)[0], 401)
        self.assertEqual(
            self.https(one, "POST", "/v1/admin/snapshot", self.new, new_token)[0], 200)
        # /metrics counts the reloads and shows when the certificates now in use expire.
        _, text = self.https(one, "GET", "/metrics", self.new)
        samples = dict(line.rsplit(" ", 1) for line in text.decode().splitlines()
                       if line.startswith("raftkv_reloads_total")
                       or line.startswith("raftkv_tls_certificate_expiry"))
        self.assertEqual(samples['raftkv_reloads_total{result="done"}'], "3", samples)
        self.assertEqual(samples['raftkv_reloads_total{result="refused"}'], "1", samples)
        for use, cert in (("http", "http.pem"), ("peer", "node1.pem")):
            info = ssl._ssl._test_decode_cert(os.path.join(self.new, cert))
            self.assertEqual(
                int(samples[f'raftkv_tls_certificate_expiry_timestamp_seconds{{use="{use}"}}']),
                int(ssl.cert_time_to_seconds(info["notAfter"])), samples)
        # memcached: a new connection must authenticate, as the users file says.
        self.assertEqual(talk(one.memcached, [b"get k\r\n"]),
                         [b"CLIENT_ERROR unauthenticated\r\n"])
        self.assertEqual(talk(one.memcached, [b"set auth 0 0 7\r\nbob pw2\r\n"]),
                         [b"STORED\r\n"])

        # Peers: node 3 starts again and reads only the new CA's files; it can rejoin only
        # because nodes 1 and 2 now trust that CA and present certificates it signed.
        three = c.nodes[2]
        self.assertEqual(three.stop(), 0)
        three.restart()
        writer = next(n for n in c.nodes if n is not three)
        status, _ = self.https(writer, "PUT", "/v1/kv/after-reload", self.new, body=b"rotated")
        self.assertEqual(status, 200)

        def read_on_three():
            try:
                return self.https(three, "GET", "/v1/kv/after-reload", self.new)
            except OSError:
                return None
        status, body = harness.wait_until(
            lambda: (lambda r: r if r and r[0] == 200 else None)(read_on_three()), 20,
            interval=0.2, what="node 3 serving a linearizable read after the rotation")
        self.assertEqual(body, b"rotated")
        self.assertNotIn("TLS handshake failed", three.log())


class PeerTlsMigration(harness.TestCase):
    """docs/config.md, "Moving a running cluster to TLS": a plain 3-node cluster moves to
    mutual TLS between peers with one SIGHUP per node per step ([tls] plain_peers "dial",
    then "accept", then "refuse"), serving writes and linearizable reads on every node
    after each reload; a step out of order is refused and changes nothing."""

    def setUp(self):
        self.tmp, (self.certs,) = make_cas("raftkv-tls-move-", ("cluster",), 3)
        self.mode = None  # no [tls] table

        def tls_table(node_id):
            if self.mode is None:
                return ""
            return "\n".join([
                "[tls]",
                f'ca = "{self.certs}/ca.pem"',
                f'cert = "{self.certs}/node{node_id}.pem"',
                f'key = "{self.certs}/node{node_id}.key"',
                f'plain_peers = "{self.mode}"',
            ])

        self.cluster = SecureCluster(nodes=3, extra=tls_table)
        self.cluster.start_ready()

    def tearDown(self):
        harness.close_after(self, self.cluster)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def reload(self, node, mode, mark="reloaded "):
        """Writes the node's config with [tls] plain_peers = mode (None: no [tls]), sends
        SIGHUP and waits for the log line that says how it went (`mark`)."""
        self.mode = mode
        node.write_config()
        before = node.log().count(mark)
        node.signal(signal.SIGHUP)
        harness.wait_until(lambda: node.log().count(mark) > before, 10,
                           what=f"node {node.id}: {mark}")

    def reload_all(self, mode):
        for n in self.cluster.nodes:
            self.reload(n, mode)
            self.write_and_read_everywhere(f"after-{mode}-{n.id}", f"{mode} {n.id}".encode())

    def write_and_read_everywhere(self, key, value):
        write_and_read_everywhere(self, self.cluster, key, value)

    def links(self, node):
        m = node.metrics()
        return {(d, s): int(m.get(f'raftkv_peer_connections{{direction="{d}",security="{s}"}}', -1))
                for d in ("out", "in") for s in ("tls", "plain")}

    def test_a_plain_cluster_moves_to_tls_one_reload_at_a_time(self):
        c = self.cluster
        self.write_and_read_everywhere("plain", b"before")
        one = c.nodes[0]
        plain = {("out", "tls"): 0, ("out", "plain"): 2, ("in", "tls"): 0, ("in", "plain"): 2}
        self.assertEqual(self.links(one), plain)

        # TLS on with anything but "dial" would cut links: refused, nothing changes.
        self.reload(one, "accept", "reload refused, nothing changed")
        self.assertIn('plain_peers = \"dial\"', one.log().split("reload refused")[-1])
        self.assertEqual(self.links(one), plain)

        self.reload_all("dial")
        self.assertIn("the peer port also takes plain TCP, unauthenticated", one.log())
        self.reload_all("accept")
        self.reload_all("refuse")
        tls = {("out", "tls"): 2, ("out", "plain"): 0, ("in", "tls"): 2, ("in", "plain"): 0}
        for n in c.nodes:
            harness.wait_until(lambda: self.links(n) == tls, 10,
                               what=f"node {n.id}: every link TLS")

        # Now TLS only: TLS off by a reload would cut every link, and is refused.
        self.reload(one, None, "reload refused, nothing changed")
        self.assertEqual(self.links(one), tls)
        self.write_and_read_everywhere("tls", b"after")
        for n in c.nodes:
            self.assertNotIn("TLS handshake failed", n.log(), f"node {n.id}")


FAKETIME_LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"


class SkewedSecureNode(SecureNode):
    """A SecureNode whose wall clock runs cluster.skew ahead (libfaketime)."""

    def preexec(self):
        super().preexec()
        os.environ["LD_PRELOAD"] = FAKETIME_LIB
        os.environ["FAKETIME"] = self.cluster.skew
        os.environ["FAKETIME_DONT_FAKE_MONOTONIC"] = "1"


class SkewedSecureCluster(SecureCluster):
    node_class = SkewedSecureNode

    def __init__(self, skew, **kw):
        self.skew = skew
        super().__init__(**kw)


class CertificateExpiry(harness.TestCase):
    """A certificate that expires within 14 days, or has expired, is logged at start (WARN,
    ERROR) with what to do; make-certs.sh's certificates last 30 days, so a clock run ahead
    by libfaketime brings a node there."""

    @classmethod
    def setUpClass(cls):
        if not os.path.exists(FAKETIME_LIB):
            raise unittest.SkipTest(f"SKIPPED: {FAKETIME_LIB} missing (apt-get install faketime)")
        cls.tmp, (cls.certs,) = make_cas("raftkv-expiry-", ("cluster",), 1)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def start_ahead(self, skew):
        extra = "\n".join(["[http]", f'tls_cert = "{self.certs}/http.pem"',
                           f'tls_key = "{self.certs}/http.key"'])
        cluster = SkewedSecureCluster(skew, nodes=1, extra=extra)
        self.addCleanup(harness.close_after, self, cluster)
        cluster.start()
        node = cluster.nodes[0]
        harness.wait_until(lambda: "serving" in node.log(), 15, what="the node serving")
        return node

    def test_a_certificate_near_or_past_its_end_is_logged(self):
        soon = self.start_ahead("+25d")
        self.assertRegex(soon.log(), r"WARN .*certificate \[http\] tls_cert \(.*http\.pem\) "
                                     r"expires in [45] day\(s\)")
        late = self.start_ahead("+32d")
        self.assertRegex(late.log(), r"ERROR .*certificate \[http\] tls_cert \(.*http\.pem\) "
                                     r"expired [12] day\(s\) ago: clients refuse it")
        # A node that is far from the end says nothing.
        fine = self.start_ahead("+1d")
        self.assertNotIn("certificate [http] tls_cert", fine.log())


# One request per round trip; each is compared with the real memcached's answer.
AUTH_SEQUENCES = [
    [b"get foo\r\n", b"version\r\n", b"set foo 0 0 3\r\nabc\r\n",
     b"set x 0 0 12\r\nalice secret\r\n", b"set foo 0 0 3\r\nabc\r\n", b"get foo\r\n"],
    [b"set x 0 0 11\r\nalice wrong\r\n", b"get foo\r\n", b"set x 0 0 7\r\nbob pw2\r\n",
     b"get foo\r\n"],
    [b"set x 0 0 5\r\nalice\r\n", b"stats\r\n", b"bogus\r\n", b"\r\n", b"mn\r\n",
     b"add x 0 0 7\r\n", b"bob pw2\r\n"],
    [b"set x 0 0 7\r\nbob:pw2\r\n", b"set x 0 0 8\r\nbob  pw2\r\n", b"get foo\r\n"],
    [b"set x 5 0 7 noreply\r\nbob pw2\r\n", b"get foo\r\n"],
    [b"set x 0 0 9\r\nbob pw2\r\n\r\n", b"set x 0 0 13\r\nbob pw2 extra\r\n"],
    [b"set x 0 0 nine\r\n", b"set x 0 0\r\n", b"settle x 0 0 3\r\n", b"quit\r\n"],
]


class MemcachedAuth(harness.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="raftkv-auth-")
        os.chmod(cls.tmp, 0o755)  # the reference memcached runs as nobody
        cls.auth = os.path.join(cls.tmp, "memcached.auth")
        with open(cls.auth, "w") as f:
            f.write("alice:secret\nbob:pw2\n")
        os.chmod(cls.auth, 0o644)
        cls.cluster = SecureCluster(nodes=1, extra=f'[memcached]\nauth_file = "{cls.auth}"')
        cls.cluster.start()
        cls.node = cls.cluster.nodes[0]
        wait_port(cls.node.memcached)
        harness.wait_until(lambda: cls.node.status()["leader_id"] == 1, 15, what="leader")
        cls.reference = None
        memcached = shutil.which("memcached")
        if memcached:
            port = harness.free_port()
            args = [memcached, "-p", str(port), "-U", "0", "-l", "127.0.0.1", "-Y", cls.auth]
            if os.geteuid() == 0:
                args += ["-u", "nobody"]
            cls.reference_proc = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                                  stderr=subprocess.DEVNULL,
                                                  preexec_fn=harness._die_with_parent)
            cls.reference = ("127.0.0.1", port)
            wait_port(cls.reference)

    @classmethod
    def tearDownClass(cls):
        if cls.reference:
            cls.reference_proc.kill()
            cls.reference_proc.wait()
        cls.cluster.close()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_unauthenticated_commands_are_refused(self):
        self.assertEqual(talk(self.node.memcached, [b"get k\r\n", b"set k 0 0 1\r\nv\r\n"]),
                         [b"CLIENT_ERROR unauthenticated\r\n",
                          b"CLIENT_ERROR bad authentication token format\r\n"])

    def test_authenticate_then_serve(self):
        replies = talk(self.node.memcached, [b"set auth 0 0 12\r\nalice secret\r\n",
                                             b"set k 0 0 1\r\nv\r\n", b"get k\r\n"])
        self.assertEqual(replies, [b"STORED\r\n", b"STORED\r\n", b"VALUE k 0 1\r\nv\r\nEND\r\n"])
        # Authentication is per connection.
        self.assertEqual(talk(self.node.memcached, [b"get k\r\n"]),
                         [b"CLIENT_ERROR unauthenticated\r\n"])

    def test_pipelined_credential_then_commands(self):
        with socket.create_connection(self.node.memcached, timeout=10) as s:
            s.sendall(b"get p\r\nset a 0 0 7\r\nbob pw2\r\nset p 0 0 2\r\nhi\r\nget p\r\n")
            data = harness.recv_until(s, b"END\r\n")
        self.assertEqual(data, b"CLIENT_ERROR unauthenticated\r\nSTORED\r\nSTORED\r\n"
                               b"VALUE p 0 2\r\nhi\r\nEND\r\n")

    def test_long_line_without_newline_closes(self):
        with socket.create_connection(self.node.memcached, timeout=10) as s:
            s.sendall(b"x" * 2000)
            self.assertEqual(harness.recv_until(s, b"\r\n", timeout=10), b"")

    def auth_stats(self, addr):
        """auth_cmds and auth_errors, read on a connection that authenticates first."""
        with socket.create_connection(addr, timeout=10) as s:
            s.sendall(b"set auth 0 0 12\r\nalice secret\r\nstats\r\n")
            data = harness.recv_until(s, b"END\r\n").decode()
        stats = dict(line.split(" ")[1:3] for line in data.split("\r\n")
                     if line.startswith("STAT "))
        return int(stats["auth_cmds"]), int(stats["auth_errors"])

    def test_auth_counters_count_as_memcached_does(self):
        # A failed and a good credential, and a malformed one (not counted by memcached).
        seq = [b"set a 0 0 9\r\nalice bad\r\n", b"set a 0 0 12\r\nalice secret\r\n"]
        for addr in [self.node.memcached] + ([self.reference] if self.reference else []):
            with self.subTest(server=addr):
                cmds0, errors0 = self.auth_stats(addr)
                talk(addr, seq)
                talk(addr, [b"set a 0 0 5\r\nalone\r\n"])
                cmds1, errors1 = self.auth_stats(addr)
                # The two checked credentials, plus auth_stats' own login.
                self.assertEqual((cmds1 - cmds0, errors1 - errors0), (3, 1))

    def test_same_replies_as_memcached(self):
        if not self.reference:
            self.skipTest("memcached is not installed")
        for seq in AUTH_SEQUENCES:
            with self.subTest(seq=seq):
                expected = talk(self.reference, seq)
                self.assertEqual(talk(self.node.memcached, seq), expected)


if __name__ == "__main__":
    harness.main()
