"""The HTTP door of the real binary, one node, through Python's http.client (docs/http-api.md):
every row of the API table and each error status, binary values, TTL and flags, CAS races,
paging through 1,000 keys, keep-alive and pipelining, size limits, a slow-loris client timed
out while others are served, /metrics checked by a parser of the Prometheus text format."""

import http.client
import json
import re
import socket
import threading
import time
import urllib.parse

import harness


def request(addr, method, path, body=None, headers=None, timeout=10.0):
    return harness.http_request(addr, method, path, body=body, headers=headers, timeout=timeout)


def error_of(body):
    doc = json.loads(body)
    assert set(doc) == {"error", "message"}, doc
    return doc["error"]


# --- a parser of the Prometheus text exposition format (0.0.4) --------------------------------

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE = re.compile(r"^(" + _NAME + r")(\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(,|$)')


def parse_prometheus(text):
    """Returns ({family: type}, [(name, {labels}, value)]); raises AssertionError on any
    violation of the format."""
    assert text.endswith("\n"), "exposition must end with a newline"
    types, helps, samples, seen = {}, {}, [], set()
    for line in text.split("\n")[:-1]:
        assert line, "empty line"
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            _, kind, name, rest = line.split(" ", 3)
            assert re.fullmatch(_NAME, name), name
            if kind == "TYPE":
                assert name not in types, f"second TYPE for {name}"
                assert rest in ("counter", "gauge", "histogram", "summary", "untyped"), rest
                types[name] = rest
            else:
                helps[name] = rest
            continue
        assert not line.startswith("#"), line
        m = _SAMPLE.match(line)
        assert m, f"bad sample line: {line!r}"
        name, labels_text, value_text = m.group(1), m.group(3), m.group(4)
        labels = {}
        if labels_text:
            pos = 0
            while pos < len(labels_text):
                lm = _LABEL.match(labels_text, pos)
                assert lm, f"bad labels in {line!r}"
                labels[lm.group(1)] = re.sub(r"\\(.)", lambda e: "\n" if e.group(1) == "n"
                                             else e.group(1), lm.group(2))
                pos = lm.end()
        value = float(value_text)  # accepts +Inf, NaN
        family = name
        for suffix in ("_bucket", "_sum", "_count"):
            if name.endswith(suffix) and types.get(name[: -len(suffix)]) == "histogram":
                family = name[: -len(suffix)]
        assert family in types, f"sample before its TYPE: {line!r}"
        assert family in helps, f"sample without HELP: {line!r}"
        key = (name, tuple(sorted(labels.items())))
        assert key not in seen, f"duplicate series {line!r}"
        seen.add(key)
        if types[family] == "counter":
            assert name.endswith("_total"), name
            assert value >= 0
        samples.append((name, labels, value))
    # Histograms: cumulative buckets ending in +Inf == _count.
    for family, kind in types.items():
        if kind != "histogram":
            continue
        series = {}
        for name, labels, value in samples:
            rest = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
            if name == family + "_bucket":
                series.setdefault(rest, {"b": [], "count": None})["b"].append(
                    (float(labels["le"]), value))
            elif name == family + "_count":
                series.setdefault(rest, {"b": [], "count": None})["count"] = value
        for rest, s in series.items():
            les = [le for le, _ in s["b"]]
            assert les == sorted(les) and les[-1] == float("inf"), (family, rest)
            counts = [v for _, v in s["b"]]
            assert counts == sorted(counts), f"{family} buckets not cumulative"
            assert counts[-1] == s["count"], f"{family} +Inf != _count"
    return types, samples


def metric(samples, name, **labels):
    for n, l, v in samples:
        if n == name and all(l.get(k) == val for k, val in labels.items()):
            return v
    return None


class HttpApiTest(harness.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cluster = harness.Cluster(nodes=1, limits={"max_value_bytes": 65536,
                                                       "max_memory_mb": 1})
        cls.cluster.start()
        try:
            cls.cluster.wait_ready()
            node = cls.cluster.nodes[0]
            harness.wait_until(lambda: request(node.http, "GET", "/readyz")[0] == 200, 15,
                               what="readyz")
        except Exception:
            cls.cluster.dump_logs()
            cls.cluster.close()
            raise
        cls.addr = cls.cluster.nodes[0].http

    @classmethod
    def tearDownClass(cls):
        cls.cluster.close()

    # --- the tables of docs/http-api.md -----------------------------------------------------

    def test_put_get_delete(self):
        status, headers, body = request(self.addr, "PUT", "/v1/kv/row1?flags=42", body=b"v1")
        self.assertEqual(status, 200)
        version = json.loads(body)["version"]
        self.assertGreater(version, 0)
        self.assertEqual(headers["etag"], f'"{version}"')

        status, headers, body = request(self.addr, "GET", "/v1/kv/row1")
        self.assertEqual((status, body), (200, b"v1"))
        self.assertEqual(headers["etag"], f'"{version}"')
        self.assertEqual(headers["x-raftkv-flags"], "42")
        self.assertEqual(headers["x-raftkv-expires"], "0")
        self.assertEqual(headers["content-type"], "application/octet-stream")

        status, _, body = request(self.addr, "GET", "/v1/kv/row1?meta=1")
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body), {"key": "row1", "value": "v1", "version": version,
                                            "flags": 42, "expires": 0})

        status, _, body = request(self.addr, "DELETE", "/v1/kv/row1")
        self.assertEqual(status, 200)
        status, _, body = request(self.addr, "GET", "/v1/kv/row1")
        self.assertEqual(status, 404)
        self.assertEqual(error_of(body), "not_found")
        status, _, body = request(self.addr, "DELETE", "/v1/kv/row1")
        self.assertEqual(status, 404)
        self.assertEqual(error_of(body), "not_found")

    def test_versions_increase_and_overwrite(self):
        _, _, b1 = request(self.addr, "PUT", "/v1/kv/ver", body=b"a")
        _, _, b2 = request(self.addr, "PUT", "/v1/kv/ver", body=b"b")
        self.assertGreater(json.loads(b2)["version"], json.loads(b1)["version"])
        self.assertEqual(request(self.addr, "GET", "/v1/kv/ver")[2], b"b")

    def test_cas_with_if_match(self):
        _, headers, _ = request(self.addr, "PUT", "/v1/kv/cas", body=b"one")
        etag = headers["etag"]
        status, _, body = request(self.addr, "PUT", "/v1/kv/cas", body=b"two",
                                  headers={"If-Match": '"999999"'})
        self.assertEqual(status, 412)
        self.assertEqual(error_of(body), "exists")
        status, headers2, _ = request(self.addr, "PUT", "/v1/kv/cas", body=b"two",
                                      headers={"If-Match": etag})
        self.assertEqual(status, 200)
        self.assertNotEqual(headers2["etag"], etag)
        # The old ETag no longer matches.
        self.assertEqual(request(self.addr, "PUT", "/v1/kv/cas", body=b"three",
                                 headers={"If-Match": etag})[0], 412)
        self.assertEqual(request(self.addr, "GET", "/v1/kv/cas")[2], b"two")
        # If-Match on a missing key: 404.
        status, _, body = request(self.addr, "PUT", "/v1/kv/cas-missing", body=b"x",
                                  headers={"If-Match": '"5"'})
        self.assertEqual(status, 404)
        self.assertEqual(error_of(body), "not_found")

    def test_add_with_if_none_match(self):
        status, _, _ = request(self.addr, "PUT", "/v1/kv/add", body=b"first",
                               headers={"If-None-Match": "*"})
        self.assertEqual(status, 200)
        status, _, body = request(self.addr, "PUT", "/v1/kv/add", body=b"second",
                                  headers={"If-None-Match": "*"})
        self.assertEqual(status, 412)
        self.assertEqual(error_of(body), "not_stored")
        self.assertEqual(request(self.addr, "GET", "/v1/kv/add")[2], b"first")

    def test_delete_with_if_match(self):
        _, headers, _ = request(self.addr, "PUT", "/v1/kv/del", body=b"x")
        status, _, body = request(self.addr, "DELETE", "/v1/kv/del",
                                  headers={"If-Match": '"123456789"'})
        self.assertEqual(status, 412)
        self.assertEqual(request(self.addr, "GET", "/v1/kv/del")[0], 200)
        status, _, _ = request(self.addr, "DELETE", "/v1/kv/del",
                               headers={"If-Match": headers["etag"]})
        self.assertEqual(status, 200)
        self.assertEqual(request(self.addr, "GET", "/v1/kv/del")[0], 404)

    def test_ttl_expires(self):
        before = time.time()
        status, _, _ = request(self.addr, "PUT", "/v1/kv/ttl?ttl=1", body=b"soon")
        self.assertEqual(status, 200)
        status, headers, _ = request(self.addr, "GET", "/v1/kv/ttl")
        self.assertEqual(status, 200)
        expires = int(headers["x-raftkv-expires"])
        self.assertTrue(before <= expires <= time.time() + 2, expires)
        harness.wait_until(lambda: request(self.addr, "GET", "/v1/kv/ttl")[0] == 404, 5,
                           what="the item to expire")

    def test_binary_values_round_trip(self):
        value = bytes(range(256)) * 4
        status, _, _ = request(self.addr, "PUT", "/v1/kv/bin", body=value)
        self.assertEqual(status, 200)
        status, _, body = request(self.addr, "GET", "/v1/kv/bin")
        self.assertEqual(body, value)
        doc = json.loads(request(self.addr, "GET", "/v1/kv/bin?meta=1")[2])
        self.assertEqual(doc["encoding"], "base64")
        import base64
        self.assertEqual(base64.b64decode(doc["value"]), value)
        # UTF-8 text stays text in ?meta=1.
        text = "h\u00e9llo \u20ac".encode()
        request(self.addr, "PUT", "/v1/kv/utf8", body=text)
        doc = json.loads(request(self.addr, "GET", "/v1/kv/utf8?meta=1")[2])
        self.assertEqual(doc["value"], "h\u00e9llo \u20ac")
        self.assertNotIn("encoding", doc)
        # Empty values are values.
        self.assertEqual(request(self.addr, "PUT", "/v1/kv/empty", body=b"")[0], 200)
        self.assertEqual(request(self.addr, "GET", "/v1/kv/empty")[:3:2], (200, b""))

    def test_percent_encoded_keys(self):
        key = "dir/sub:\u00e9"
        path = "/v1/kv/" + urllib.parse.quote(key, safe="")
        self.assertEqual(request(self.addr, "PUT", path, body=b"k")[0], 200)
        self.assertEqual(request(self.addr, "GET", path)[2], b"k")
        doc = json.loads(request(self.addr, "GET", path + "?meta=1")[2])
        self.assertEqual(doc["key"], key)

    def test_bad_requests_are_400(self):
        for path in ("/v1/kv/a%20b", "/v1/kv/" + "k" * 251, "/v1/kv/%zz", "/v1/kv/",
                     "/v1/kv?limit=0", "/v1/kv?limit=abc"):
            status, _, body = request(self.addr, "GET", path)
            self.assertEqual(status, 400, path)
            self.assertEqual(error_of(body), "bad_request")
        for path in ("/v1/kv/k?ttl=-5", "/v1/kv/k?flags=99999999999", "/v1/kv/k?ttl=x"):
            status, _, body = request(self.addr, "PUT", path, body=b"v")
            self.assertEqual(status, 400, path)
            self.assertEqual(error_of(body), "bad_request")
        status, _, _ = request(self.addr, "PUT", "/v1/kv/k", body=b"v",
                               headers={"If-Match": "nonsense"})
        self.assertEqual(status, 400)

    def test_unknown_path_404_and_method_405(self):
        status, _, body = request(self.addr, "GET", "/nope")
        self.assertEqual(status, 404)
        self.assertEqual(error_of(body), "not_found")
        status, headers, body = request(self.addr, "POST", "/v1/kv/k", body=b"v")
        self.assertEqual(status, 405)
        self.assertEqual(headers["allow"], "GET, HEAD, PUT, DELETE")
        self.assertEqual(error_of(body), "method_not_allowed")
        status, headers, _ = request(self.addr, "PUT", "/v1/status", body=b"")
        self.assertEqual(status, 405)
        self.assertIn("GET", headers["allow"])
        status, headers, _ = request(self.addr, "GET", "/v1/admin/snapshot")
        self.assertEqual((status, headers["allow"]), (405, "POST"))

    def test_chunked_put(self):
        conn = http.client.HTTPConnection(*self.addr, timeout=10)
        conn.request("PUT", "/v1/kv/chunked", body=iter([b"abc", b"def", b"g"]),
                     encode_chunked=True)
        r = conn.getresponse()
        r.read()
        conn.close()
        self.assertEqual(r.status, 200)
        self.assertEqual(request(self.addr, "GET", "/v1/kv/chunked")[2], b"abcdefg")

    def test_head_and_conditional_get(self):
        status, headers, body = request(self.addr, "PUT", "/v1/kv/cond", body=b"abc")
        version = json.loads(body)["version"]
        # HEAD: the GET's headers, no body.
        status, headers, body = request(self.addr, "HEAD", "/v1/kv/cond")
        self.assertEqual((status, body), (200, b""))
        self.assertEqual(headers["etag"], f'"{version}"')
        self.assertEqual(headers["content-length"], "3")
        status, _, _ = request(self.addr, "HEAD", "/v1/kv/missing-cond")
        self.assertEqual(status, 404)
        # If-None-Match with the current version (alone, in a list, or *): 304, no body.
        for tag in (f'"{version}"', f'"1", W/"{version}"', "*"):
            status, headers, body = request(self.addr, "GET", "/v1/kv/cond",
                                            headers={"If-None-Match": tag})
            self.assertEqual((status, body), (304, b""), tag)
            self.assertEqual(headers["etag"], f'"{version}"')
        # An older version: the current value.
        status, _, body = request(self.addr, "GET", "/v1/kv/cond",
                                  headers={"If-None-Match": f'"{version - 1}"'})
        self.assertEqual((status, body), (200, b"abc"))
        status, _, body = request(self.addr, "GET", "/v1/kv/cond",
                                  headers={"If-None-Match": "yesterday"})
        self.assertEqual((status, error_of(body)), (400, "bad_request"))

    def test_put_without_length_is_411(self):
        with socket.create_connection(self.addr, timeout=10) as s:
            s.sendall(b"PUT /v1/kv/nolen HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            reply = harness.recv_until(s, b"}")
        self.assertTrue(reply.startswith(b"HTTP/1.1 411"), reply)
        self.assertIn(b'"length_required"', reply)

    def test_too_large_is_413(self):
        status, headers, body = request(self.addr, "PUT", "/v1/kv/big", body=b"x" * 65537)
        self.assertEqual(status, 413)
        self.assertEqual(error_of(body), "too_large")
        self.assertEqual(request(self.addr, "PUT", "/v1/kv/big", body=b"x" * 65536)[0], 200)

    def test_memory_quota_is_507(self):
        # max_memory_mb = 1: 64 KiB values fill it after ~16; nothing stored is evicted.
        stored, status, body = [], 200, b""
        for i in range(40):
            status, _, body = request(self.addr, "PUT", f"/v1/kv/quota{i}", body=b"q" * 65536)
            if status != 200:
                break
            stored.append(i)
        self.assertEqual(status, 507)
        self.assertEqual(error_of(body), "out_of_memory")
        self.assertGreater(len(stored), 0)
        for i in stored:
            self.assertEqual(request(self.addr, "GET", f"/v1/kv/quota{i}")[0], 200)
        for i in stored:
            request(self.addr, "DELETE", f"/v1/kv/quota{i}")

    def test_header_too_large_is_431(self):
        status, _, body = request(self.addr, "GET", "/v1/kv/a",
                                  headers={"X-Filler": "f" * 20000})
        self.assertEqual(status, 431)
        self.assertEqual(error_of(body), "header_too_large")

    # --- listing ----------------------------------------------------------------------------

    def test_paging_through_1000_keys(self):
        # Written over one keep-alive connection.
        conn = http.client.HTTPConnection(*self.addr, timeout=30)
        expected = [f"page/{i:04d}" for i in range(1000)]
        for k in expected:
            conn.request("PUT", "/v1/kv/" + urllib.parse.quote(k, safe=""), body=k.encode())
            r = conn.getresponse()
            r.read()
            self.assertEqual(r.status, 200)
        request(self.addr, "PUT", "/v1/kv/pagf", body=b"not in the prefix")
        seen, after, pages = [], None, 0
        while True:
            q = {"prefix": "page/", "limit": "97"}
            if after is not None:
                q["after"] = after
            conn.request("GET", "/v1/kv?" + urllib.parse.urlencode(q))
            r = conn.getresponse()
            self.assertEqual(r.status, 200)
            doc = json.loads(r.read())
            pages += 1
            self.assertLessEqual(len(doc["keys"]), 97)
            for item in doc["keys"]:
                self.assertEqual(set(item), {"key", "version", "bytes", "expires"})
                self.assertEqual(item["bytes"], len(item["key"]))
            seen += [item["key"] for item in doc["keys"]]
            after = doc["next"]
            if after is None:
                break
            self.assertEqual(after, seen[-1])
        conn.close()
        self.assertEqual(seen, expected)
        self.assertEqual(pages, 11)  # ceil(1000 / 97)

    # --- connection handling ----------------------------------------------------------------

    def test_pipelining_on_a_raw_socket(self):
        reqs = b""
        for i in range(10):
            reqs += (f"PUT /v1/kv/pipe{i} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(str(i))}"
                     f"\r\n\r\n{i}").encode()
        for i in range(10):
            reqs += f"GET /v1/kv/pipe{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        with socket.create_connection(self.addr, timeout=10) as s:
            s.sendall(reqs)
            f = s.makefile("rb")
            bodies = [harness.read_raw_response(f) for _ in range(20)]
        self.assertTrue(all(st == 200 for st, _ in bodies[:10]), bodies[:10])
        self.assertEqual([b for _, b in bodies[10:]], [str(i).encode() for i in range(10)])

    def test_keep_alive_reuses_one_connection(self):
        conn = http.client.HTTPConnection(*self.addr, timeout=10)
        conn.request("GET", "/healthz")
        r = conn.getresponse()
        r.read()
        sock = conn.sock
        for _ in range(5):
            conn.request("GET", "/healthz")
            r = conn.getresponse()
            self.assertEqual(r.status, 200)
            r.read()
            self.assertIs(conn.sock, sock)
        conn.close()

    def test_slow_loris_is_timed_out_while_others_are_served(self):
        # The server allows 10 s from a request's first byte until it is complete.
        slow = socket.create_connection(self.addr, timeout=30)
        started = time.monotonic()
        slow.sendall(b"GET /v1/kv/a HTTP/1.1\r\n")
        closed_after = None
        try:
            while time.monotonic() - started < 25:
                try:
                    slow.sendall(b"X")
                except OSError:
                    closed_after = time.monotonic() - started
                    break
                t0 = time.monotonic()
                self.assertEqual(request(self.addr, "GET", "/healthz", timeout=5)[0], 200)
                self.assertLess(time.monotonic() - t0, 1.0, "others must be served meanwhile")
                slow.settimeout(0.5)
                try:
                    if slow.recv(1024) == b"":
                        closed_after = time.monotonic() - started
                        break
                except socket.timeout:
                    pass
                except OSError:
                    closed_after = time.monotonic() - started
                    break
        finally:
            slow.close()
        self.assertIsNotNone(closed_after, "slow client was never disconnected")
        self.assertGreaterEqual(closed_after, 9.0)
        self.assertLess(closed_after, 15.0)

    # --- status, health, metrics, admin ---------------------------------------------------

    def test_status_fields(self):
        status, headers, body = request(self.addr, "GET", "/v1/status")
        self.assertEqual(status, 200)
        self.assertEqual(headers["access-control-allow-origin"], "*")
        doc = json.loads(body)
        for field in ("id", "role", "term", "leader_id", "commit_index", "applied_index",
                      "last_log_index", "snapshot_index", "members", "kv", "uptime_s",
                      "version"):
            self.assertIn(field, doc)
        self.assertEqual(doc["role"], "leader")
        self.assertEqual(doc["leader_id"], doc["id"])
        self.assertEqual(set(doc["kv"]), {"items", "bytes", "limits"})
        # The limits in force: this node's [limits], which it proposed as the cluster's.
        self.assertEqual(doc["kv"]["limits"], {"max_key_bytes": 250, "max_value_bytes": 65536,
                                               "max_memory_bytes": 1 << 20})
        self.assertEqual(len(doc["members"]), 1)
        for field in ("id", "peer", "http", "memcached", "cs733", "voter", "match_index",
                      "next_index", "last_contact_ms"):
            self.assertIn(field, doc["members"][0])
        self.assertEqual(doc["members"][0]["http"], f"{self.addr[0]}:{self.addr[1]}")

    def test_health_and_readiness(self):
        status, _, body = request(self.addr, "GET", "/healthz")
        self.assertEqual(status, 200)
        status, _, body = request(self.addr, "GET", "/readyz")
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body)["status"], "ready")

    def test_metrics_parse_and_count(self):
        status, headers, body = request(self.addr, "GET", "/metrics")
        self.assertEqual(status, 200)
        self.assertTrue(headers["content-type"].startswith("text/plain"))
        types, samples = parse_prometheus(body.decode())
        before = metric(samples, "raftkv_requests_total", door="http",
                        command="PUT /v1/kv/{key}", outcome="ok") or 0
        for i in range(3):
            request(self.addr, "PUT", f"/v1/kv/m{i}", body=b"m")
        _, samples = parse_prometheus(request(self.addr, "GET", "/metrics")[2].decode())
        self.assertEqual(metric(samples, "raftkv_requests_total", door="http",
                                command="PUT /v1/kv/{key}", outcome="ok"), before + 3)
        for name, kind in (("raftkv_term", "gauge"), ("raftkv_role", "gauge"),
                           ("raftkv_leader_changes_total", "counter"),
                           ("raftkv_lease_reads_total", "counter"),
                           ("raftkv_commit_index", "gauge"), ("raftkv_applied_index", "gauge"),
                           ("raftkv_last_log_index", "gauge"),
                           ("raftkv_proposals_total", "counter"),
                           ("raftkv_fsync_duration_seconds", "histogram"),
                           ("raftkv_request_duration_seconds", "histogram"),
                           ("raftkv_connections", "gauge"), ("raftkv_items", "gauge"),
                           ("raftkv_bytes", "gauge")):
            self.assertEqual(types.get(name), kind, name)
        self.assertEqual(metric(samples, "raftkv_role", role="leader"), 1)
        self.assertGreaterEqual(metric(samples, "raftkv_proposals_total", outcome="ok"), 3)
        self.assertGreater(metric(samples, "raftkv_fsync_duration_seconds_count"), 0)
        self.assertGreaterEqual(metric(samples, "raftkv_connections", door="http"), 1)
        status_doc = json.loads(request(self.addr, "GET", "/v1/status")[2])
        self.assertGreaterEqual(metric(samples, "raftkv_commit_index"), 3)
        self.assertLessEqual(metric(samples, "raftkv_commit_index"), status_doc["commit_index"])
        self.assertEqual(metric(samples, "raftkv_term"), status_doc["term"])

    def test_admin_snapshot(self):
        request(self.addr, "PUT", "/v1/kv/snap", body=b"s")
        status, _, body = request(self.addr, "POST", "/v1/admin/snapshot")
        self.assertEqual(status, 200, body)
        doc = json.loads(body)
        self.assertTrue(doc["ok"])
        self.assertGreater(doc["snapshot_index"], 0)
        self.assertEqual(json.loads(request(self.addr, "GET", "/v1/status")[2])
                         ["snapshot_index"], doc["snapshot_index"])

    def test_admin_transfer_leadership_validates_target(self):
        status, _, body = request(self.addr, "POST", "/v1/admin/transfer-leadership?to=9")
        self.assertEqual(status, 400)
        self.assertEqual(error_of(body), "bad_request")
        status, _, _ = request(self.addr, "POST", "/v1/admin/transfer-leadership")
        self.assertEqual(status, 400)

    def test_status_page_is_self_contained(self):
        status, headers, body = request(self.addr, "GET", "/")
        self.assertEqual(status, 200)
        self.assertTrue(headers["content-type"].startswith("text/html"))
        page = body.decode()
        self.assertIn("/v1/status", page)
        # No external assets: nothing loaded from another origin.
        self.assertNotRegex(page, r'(src|href)\s*=\s*"(https?:)?//')
        self.assertNotIn("@import", page)


class CasRaceTest(harness.TestCase):
    def test_exactly_one_of_two_racing_clients_wins(self):
        with harness.Cluster(nodes=1) as c:
            c.wait_ready()
            addr = c.nodes[0].http
            for round_ in range(25):
                _, headers, _ = request(addr, "PUT", "/v1/kv/race", body=b"base")
                etag = headers["etag"]
                barrier = threading.Barrier(2)
                results = [None, None]

                def client(i):
                    conn = http.client.HTTPConnection(*addr, timeout=10)
                    conn.connect()
                    barrier.wait()
                    conn.request("PUT", "/v1/kv/race", body=f"client{i}".encode(),
                                 headers={"If-Match": etag})
                    r = conn.getresponse()
                    results[i] = (r.status, r.read())
                    conn.close()

                threads = [threading.Thread(target=client, args=(i,)) for i in range(2)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join(15)
                statuses = sorted(s for s, _ in results)
                self.assertEqual(statuses, [200, 412], f"round {round_}: {results}")
                winner = [i for i in range(2) if results[i][0] == 200][0]
                self.assertEqual(request(addr, "GET", "/v1/kv/race")[2],
                                 f"client{winner}".encode())



class ConfiguredTimeouts(harness.TestCase):
    def test_http_timeouts_come_from_the_config(self):
        with harness.Cluster(nodes=1, limits={"http_read_timeout_ms": 400,
                                              "http_idle_timeout_ms": 600}) as c:
            c.wait_ready()
            node = c.nodes[0]
            # A request that never completes is cut after the read timeout...
            partial = socket.create_connection(node.http, timeout=10)
            partial.sendall(b"GET /v1/kv/a HTTP/1.1\r\n")
            started = time.monotonic()
            self.assertEqual(partial.recv(65536), b"")
            self.assertLess(time.monotonic() - started, 3.0)
            partial.close()
            # ...and an idle keep-alive connection after the idle timeout.
            idle = socket.create_connection(node.http, timeout=10)
            idle.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertIn(b"200 OK", idle.recv(65536))
            started = time.monotonic()
            self.assertEqual(idle.recv(65536), b"")
            self.assertLess(time.monotonic() - started, 3.0)
            idle.close()

if __name__ == "__main__":
    harness.main()
