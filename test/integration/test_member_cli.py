"""`raftkv member list|add|promote|remove` (SPEC §8, app/member_cli.h) against a fake HTTP
server: the exact request each command sends (method, path, body, Authorization), what it
prints, and its exit codes — 0 on success, 1 when the request fails (an error status, nothing
listening), 2 for a bad command line, in which case nothing is sent. No cluster is needed:
the server side of these endpoints is tested with the real nodes elsewhere."""

import json
import os
import subprocess
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import harness

TOKEN = "s3cret-admin-token-0123456789"

MEMBERS = {
    "members": [
        {"id": 1, "peer": "127.0.0.1:7001", "memcached": "127.0.0.1:11211",
         "cs733": "127.0.0.1:9001", "http": "127.0.0.1:8081", "voter": True,
         "match_index": 42, "caught_up": True},
        {"id": 4, "peer": "127.0.0.1:7004", "memcached": "127.0.0.1:11214",
         "cs733": "127.0.0.1:9004", "http": "127.0.0.1:8084", "voter": False,
         "match_index": 17, "caught_up": False},
    ],
    "config_index": 40,
}


class FakeServer:
    """An HTTP/1.1 server on a free loopback port that records every request and answers
    from a table of canned replies keyed by (method, path); anything else gets a 404 JSON.
    A request is recorded before its reply is sent, so once the client has exited its
    requests are all in `requests`."""

    def __init__(self):
        self.requests = []
        self.replies = {}
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle_any(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with outer.lock:
                    outer.requests.append({
                        "method": self.command,
                        "path": self.path,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body": body,
                    })
                    status, payload, extra = outer.replies.get(
                        (self.command, self.path),
                        (404, {"error": "not_found", "message": "no route"}, {}))
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in extra.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = do_PUT = handle_any

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def reply(self, method, path, status, payload, headers=None):
        with self.lock:
            self.replies[(method, path)] = (status, payload, headers or {})

    def taken(self):
        with self.lock:
            return list(self.requests)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


def member(*args, timeout=60):
    return subprocess.run([harness.BINARY, "member", *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


class MemberCli(harness.TestCase):
    def setUp(self):
        self.server = FakeServer()
        self.addCleanup(self.server.close)
        self.dir = tempfile.mkdtemp(prefix="raftkv-member-cli-")
        self.addCleanup(lambda: subprocess.run(["rm", "-rf", self.dir]))
        self.token_file = os.path.join(self.dir, "admin.token")
        with open(self.token_file, "w") as f:
            f.write(TOKEN + " \t\n")  # trailing whitespace and the line end are not the token

    def only_request(self):
        taken = self.server.taken()
        self.assertEqual(len(taken), 1, taken)
        return taken[0]

    # --- what each command sends, and what it prints on success ---------------------------

    def test_list_prints_a_table(self):
        self.server.reply("GET", "/v1/members", 200, MEMBERS)
        r = member("list", "--endpoint", self.server.endpoint)
        self.assertEqual(r.returncode, 0, r.stderr)
        req = self.only_request()
        self.assertEqual((req["method"], req["path"], req["body"]), ("GET", "/v1/members", b""))
        self.assertNotIn("authorization", req["headers"])
        lines = r.stdout.splitlines()
        self.assertEqual(lines[0].split(), ["ID", "ROLE", "PEER", "MATCH", "CAUGHT", "UP"])
        self.assertEqual(lines[1].split(), ["1", "voter", "127.0.0.1:7001", "42", "yes"])
        self.assertEqual(lines[2].split(), ["4", "learner", "127.0.0.1:7004", "17", "no"])
        self.assertIn("config index: 40", r.stdout)
        # Columns line up: every row has its peer at the same offset.
        offsets = {line.index("127.0.0.1:700") for line in lines[1:3]}
        self.assertEqual(len(offsets), 1, r.stdout)

    def test_list_json_prints_the_reply_as_is(self):
        self.server.reply("GET", "/v1/members", 200, MEMBERS)
        r = member("list", "--endpoint", self.server.endpoint + "/", "--json",
                   "--token-file", self.token_file)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout), MEMBERS)
        req = self.only_request()
        self.assertEqual(req["headers"].get("authorization"), f"Bearer {TOKEN}")

    def test_add_posts_the_member_and_omits_absent_doors(self):
        self.server.reply("POST", "/v1/members", 201,
                          {"id": 4, "peer": "127.0.0.1:7004", "voter": False})
        r = member("add", "--endpoint", self.server.endpoint, "--id", "4",
                   "--peer", "127.0.0.1:7004", "--http", "127.0.0.1:8084",
                   "--token-file", self.token_file)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("member 4", r.stdout)
        req = self.only_request()
        self.assertEqual((req["method"], req["path"]), ("POST", "/v1/members"))
        self.assertEqual(json.loads(req["body"]),
                         {"id": 4, "peer": "127.0.0.1:7004", "http": "127.0.0.1:8084"})
        self.assertEqual(req["headers"].get("content-type"), "application/json")
        self.assertEqual(req["headers"].get("authorization"), f"Bearer {TOKEN}")

    def test_add_sends_every_door_given(self):
        self.server.reply("POST", "/v1/members", 201, {"id": 5})
        r = member("add", "--endpoint", self.server.endpoint, "--id", "5",
                   "--peer", "[::1]:7005", "--memcached", "127.0.0.1:11215",
                   "--cs733", "127.0.0.1:9005", "--http", "127.0.0.1:8085")
        self.assertEqual(r.returncode, 0, r.stderr)
        req = self.only_request()
        self.assertEqual(json.loads(req["body"]),
                         {"id": 5, "peer": "[::1]:7005", "memcached": "127.0.0.1:11215",
                          "cs733": "127.0.0.1:9005", "http": "127.0.0.1:8085"})
        self.assertNotIn("authorization", req["headers"])

    def test_promote_posts_to_the_member(self):
        self.server.reply("POST", "/v1/members/4/promote", 200, {"id": 4, "voter": True})
        r = member("promote", "--endpoint", self.server.endpoint, "--id", "4",
                   "--token-file", self.token_file)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("member 4", r.stdout)
        req = self.only_request()
        self.assertEqual((req["method"], req["path"], req["body"]),
                         ("POST", "/v1/members/4/promote", b""))
        self.assertEqual(req["headers"].get("content-length"), "0")
        self.assertEqual(req["headers"].get("authorization"), f"Bearer {TOKEN}")

    def test_remove_deletes_the_member(self):
        self.server.reply("DELETE", "/v1/members/4", 200, {})
        r = member("remove", "--endpoint", self.server.endpoint, "--id", "4",
                   "--token-file", self.token_file)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("member 4", r.stdout)
        req = self.only_request()
        self.assertEqual((req["method"], req["path"], req["body"]),
                         ("DELETE", "/v1/members/4", b""))
        self.assertEqual(req["headers"].get("authorization"), f"Bearer {TOKEN}")

    # --- error statuses: exit 1 with the server's message --------------------------------

    def test_add_conflict_exits_one_with_the_server_message(self):
        self.server.reply("POST", "/v1/members", 409,
                          {"error": "conflict", "message": "another change is in progress"})
        r = member("add", "--endpoint", self.server.endpoint, "--id", "4",
                   "--peer", "127.0.0.1:7004")
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stdout, "")
        self.assertIn("raftkv: POST /v1/members: 409 Conflict: ", r.stderr)
        self.assertIn("another change is in progress", r.stderr)

    def test_remove_unknown_exits_one(self):
        self.server.reply("DELETE", "/v1/members/9", 404,
                          {"error": "not_found", "message": "no member 9"})
        r = member("remove", "--endpoint", self.server.endpoint, "--id", "9")
        self.assertEqual(r.returncode, 1)
        self.assertIn("raftkv: DELETE /v1/members/9: 404 Not Found: ", r.stderr)
        self.assertIn("no member 9", r.stderr)

    def test_promote_not_caught_up_exits_one(self):
        self.server.reply("POST", "/v1/members/4/promote", 503,
                          {"error": "unavailable", "message": "member 4 has not caught up"},
                          {"Retry-After": "1"})
        r = member("promote", "--endpoint", self.server.endpoint, "--id", "4")
        self.assertEqual(r.returncode, 1)
        self.assertIn("raftkv: POST /v1/members/4/promote: 503 Service Unavailable: ", r.stderr)
        self.assertIn("member 4 has not caught up", r.stderr)
        self.assertIn("retry after 1 s", r.stderr)

    def test_error_body_that_is_not_json_is_quoted(self):
        self.server.reply("GET", "/v1/members", 502, b"bad gateway from a proxy\n")
        r = member("list", "--endpoint", self.server.endpoint)
        self.assertEqual(r.returncode, 1)
        self.assertIn("raftkv: GET /v1/members: 502 Bad Gateway: bad gateway from a proxy",
                      r.stderr)

    def test_unauthorized_exits_one(self):
        self.server.reply("DELETE", "/v1/members/2", 401,
                          {"error": "unauthorized", "message": "admin token required"})
        r = member("remove", "--endpoint", self.server.endpoint, "--id", "2")
        self.assertEqual(r.returncode, 1)
        self.assertIn("401 Unauthorized", r.stderr)
        self.assertIn("admin token required", r.stderr)

    def test_list_reply_that_is_not_a_member_list_exits_one(self):
        self.server.reply("GET", "/v1/members", 200, {"something": "else"})
        r = member("list", "--endpoint", self.server.endpoint)
        self.assertEqual(r.returncode, 1)
        self.assertIn("not a member list", r.stderr)

    # --- nothing listening ----------------------------------------------------------------

    def test_nothing_listening_exits_one_naming_the_endpoint(self):
        endpoint = f"http://127.0.0.1:{harness.free_port()}"
        for args in (["list"], ["add", "--id", "4", "--peer", "127.0.0.1:7004"],
                     ["promote", "--id", "4"], ["remove", "--id", "4"]):
            r = member(*args, "--endpoint", endpoint)
            self.assertEqual(r.returncode, 1, (args, r.stderr))
            self.assertIn(f"cannot connect to {endpoint}", r.stderr, args)

    # --- bad command lines: exit 2, nothing sent ------------------------------------------

    def assert_usage_error(self, *args, mention=None):
        r = member(*args)
        self.assertEqual(r.returncode, 2, (args, r.stdout, r.stderr))
        if mention is not None:
            self.assertIn(mention, r.stderr, args)
        self.assertEqual(self.server.taken(), [], args)

    def test_bad_usage_exits_two_and_sends_nothing(self):
        ep = self.server.endpoint
        self.assert_usage_error()                                # no subcommand
        self.assert_usage_error("frobnicate", "--endpoint", ep)  # unknown subcommand
        self.assert_usage_error("list")                          # --endpoint missing
        self.assert_usage_error("promote", "--endpoint", ep, mention="--id")
        self.assert_usage_error("remove", "--endpoint", ep, mention="--id")
        self.assert_usage_error("add", "--endpoint", ep, "--peer", "127.0.0.1:7004",
                                mention="--id")
        self.assert_usage_error("add", "--endpoint", ep, "--id", "4", mention="--peer")
        self.assert_usage_error("add", "--endpoint", ep, "--id", "4", "--peer", "nowhere",
                                mention="nowhere")
        self.assert_usage_error("add", "--endpoint", ep, "--id", "4", "--peer",
                                "127.0.0.1:7004", "--http", "127.0.0.1:99999")
        self.assert_usage_error("list", "--endpoint", ep, "--bogus")

    def test_bad_ids_exit_two(self):
        for bad in ("0", "abc", "-1", "+4", "0x10", "4294967296", "4 ", ""):
            self.assert_usage_error("remove", "--endpoint", self.server.endpoint, "--id", bad)

    def test_bad_endpoints_exit_two(self):
        port = self.server.httpd.server_address[1]
        for bad in (f"127.0.0.1:{port}", f"https:/127.0.0.1:{port}",
                    f"http://127.0.0.1:{port}/v1", f"http://127.0.0.1:{port}/?x=1",
                    "http://127.0.0.1:0", "http://127.0.0.1:65536", "http://", "http://:80",
                    f"http://user@127.0.0.1:{port}", "http://::1:8081", "ftp://h:1",
                    "https://", f"https://127.0.0.1:{port}/v1", "https://::1:8081"):
            self.assert_usage_error("list", "--endpoint", bad, mention=bad)

    def test_ca_file_errors_exit_two_naming_the_file(self):
        port = self.server.httpd.server_address[1]
        https = f"https://127.0.0.1:{port}"
        missing = os.path.join(self.dir, "no-such-ca.pem")
        self.assert_usage_error("list", "--endpoint", https, "--ca-file", missing,
                                mention=missing)
        # A file that holds no PEM certificate, and a directory.
        self.assert_usage_error("list", "--endpoint", https, "--ca-file", self.token_file,
                                mention=self.token_file)
        self.assert_usage_error("list", "--endpoint", https, "--ca-file", self.dir,
                                mention=self.dir)
        # A CA for a plain HTTP endpoint: the operator expected TLS and would not get it.
        self.assert_usage_error("list", "--endpoint", self.server.endpoint,
                                "--ca-file", self.token_file, mention="--ca-file")

    def test_https_to_a_plain_http_server_exits_one(self):
        endpoint = f"https://127.0.0.1:{self.server.httpd.server_address[1]}"
        r = member("list", "--endpoint", endpoint)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn(f"cannot connect to {endpoint}: TLS handshake failed", r.stderr)

    def test_unreadable_token_file_exits_two_naming_it(self):
        missing = os.path.join(self.dir, "no-such.token")
        self.assert_usage_error("remove", "--endpoint", self.server.endpoint, "--id", "4",
                                "--token-file", missing, mention=missing)
        self.assert_usage_error("list", "--endpoint", self.server.endpoint,
                                "--token-file", self.dir, mention=self.dir)
        empty = os.path.join(self.dir, "empty.token")
        open(empty, "w").close()
        self.assert_usage_error("list", "--endpoint", self.server.endpoint,
                                "--token-file", empty, mention=empty)

    def test_help_lists_the_member_commands(self):
        r = member("--help")
        self.assertEqual(r.returncode, 0, r.stderr)
        for command in ("list", "add", "promote", "remove"):
            self.assertIn(command, r.stdout)


if __name__ == "__main__":
    harness.main()
