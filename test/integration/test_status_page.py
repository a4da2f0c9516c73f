"""The admin status page in a real browser: headless Chromium loads / of one member of a
running 3-node cluster, runs the page's script (which polls /v1/status of every member,
cross-origin), and the rendered DOM must show all three members and the leader.

Needs the replicated cluster and /usr/bin/chromium: fails (never skips) without them.

    test_status_page.py --binary PATH [--screenshot docs/status-page.png]
writes a screenshot of the page as well (used for the README)."""

import argparse
import html.parser
import os
import shutil
import subprocess
import sys
import tempfile
import threading

import harness

CHROMIUM = "/usr/bin/chromium"
SCREENSHOT = None


def chromium_args(profile):
    return [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--disable-extensions", "--disable-dev-shm-usage",
            f"--user-data-dir={profile}"]


class MemberRows(html.parser.HTMLParser):
    """Collects <tr class="member ..." data-id data-role> rows and the #leader card."""

    def __init__(self):
        super().__init__()
        self.rows = []
        self.links = {}  # member id -> href of its name link
        self.leader_card = None
        self.rows_text = {}
        self._in_row = None
        self._in_leader = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        if tag == "tr" and "member" in classes:
            self.rows.append({"id": int(a["data-id"]), "role": a.get("data-role"),
                              "highlighted": "leader" in classes})
            self._in_row = int(a["data-id"])
            self.rows_text[self._in_row] = ""
        if tag == "a" and self._in_row is not None and "href" in a:
            self.links[self._in_row] = a["href"]
        if a.get("id") == "leader":
            self._in_leader = True
            self.leader_card = {"id": int(a.get("data-leader-id") or 0), "text": ""}

    def handle_endtag(self, tag):
        if tag == "tr":
            self._in_row = None
        if tag == "div" and self._in_leader:
            self._in_leader = False

    def handle_data(self, data):
        if self._in_row is not None:
            self.rows_text[self._in_row] += data
        if self._in_leader:
            self.leader_card["text"] += data


def dump_dom(url, profile, budget_ms, extra=()):
    out = subprocess.run(chromium_args(profile) + list(extra) +
                         [f"--virtual-time-budget={budget_ms}", "--dump-dom", url],
                         capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    return out.stdout.decode(errors="replace")


def wait_for_three_members(url, profile, extra=()):
    """Polls the rendered DOM until the page has fetched every member of a 3-node cluster
    and found one leader; returns the parsed rows."""
    def rendered():
        parser = MemberRows()
        parser.feed(dump_dom(url, profile, 4000, extra))
        roles = {r["id"]: r["role"] for r in parser.rows}
        if len(parser.rows) == 3 and "unreachable" not in roles.values() \
                and list(roles.values()).count("leader") == 1:
            return parser
        return None

    return harness.wait_until(rendered, 90, interval=0.5,
                              what=f"the page at {url} to show three members")


class StatusPageTest(harness.TestCase):
    def test_page_shows_all_members_and_the_leader(self):
        self.assertTrue(os.access(CHROMIUM, os.X_OK), "chromium is required")
        profile = tempfile.mkdtemp(prefix="raftkv-chromium-")
        try:
            with harness.Cluster(nodes=3) as c:
                leader = c.wait_ready(timeout=20)
                for i in range(20):
                    harness.http_request(leader.http, "PUT", f"/v1/kv/page{i}", body=b"v")
                viewer = [n for n in c.nodes if n is not leader][0]
                url = f"http://{viewer.http[0]}:{viewer.http[1]}/"
                page = wait_for_three_members(url, profile)
                ids = sorted(r["id"] for r in page.rows)
                self.assertEqual(ids, [1, 2, 3])
                by_id = {r["id"]: r for r in page.rows}
                self.assertEqual(by_id[leader.id]["role"], "leader")
                self.assertTrue(by_id[leader.id]["highlighted"])
                for n in c.nodes:
                    if n is not leader:
                        self.assertEqual(by_id[n.id]["role"], "follower")
                        self.assertFalse(by_id[n.id]["highlighted"])
                        self.assertIn("healthy", page.rows_text[n.id])
                self.assertEqual(page.leader_card["id"], leader.id)
                self.assertIn(f"node {leader.id}", page.leader_card["text"])
                self.assertIn("(this)", page.rows_text[viewer.id])
                # Each member links to its own page.
                for n in c.nodes:
                    self.assertEqual(page.links.get(n.id), f"http://{n.http[0]}:{n.http[1]}/")

                if SCREENSHOT:
                    # Photograph the page while a client writes, so the chart has a story.
                    stop = threading.Event()

                    def writer():
                        i = 0
                        while not stop.is_set():
                            harness.http_request(leader.http, "PUT", f"/v1/kv/shot{i % 50}",
                                                 body=b"v")
                            i += 1

                    t = threading.Thread(target=writer)
                    t.start()
                    try:
                        subprocess.run(chromium_args(profile) + [
                            "--virtual-time-budget=30000", "--window-size=1100,760",
                            "--hide-scrollbars", f"--screenshot={os.path.abspath(SCREENSHOT)}",
                            url], capture_output=True, timeout=120, stdin=subprocess.DEVNULL)
                    finally:
                        stop.set()
                        t.join(30)
                    self.assertTrue(os.path.getsize(SCREENSHOT) > 0)
        finally:
            shutil.rmtree(profile, ignore_errors=True)

    def test_page_over_https_reaches_every_member_over_https(self):
        """With HTTPS-only doors ([http] tls_cert) the page polls the other members at
        https:// addresses too; at http:// ones it would find them all unreachable."""
        self.assertTrue(os.access(CHROMIUM, os.X_OK), "chromium is required")
        from test_security import SecureCluster, make_certs
        profile = tempfile.mkdtemp(prefix="raftkv-chromium-")
        certs = tempfile.mkdtemp(prefix="raftkv-page-certs-")
        try:
            make_certs(certs)
            extra = "\n".join(["[http]", f'tls_cert = "{certs}/http.pem"',
                               f'tls_key = "{certs}/http.key"'])
            with SecureCluster(nodes=3, extra=extra) as c:
                leader = c.wait_ready(timeout=20)
                viewer = [n for n in c.nodes if n is not leader][0]
                url = f"https://{viewer.http[0]}:{viewer.http[1]}/"
                # The throwaway CA is not the browser's: skip the check, not the protocol.
                page = wait_for_three_members(url, profile, ["--ignore-certificate-errors"])
                self.assertEqual({r["id"]: r["role"] for r in page.rows}[leader.id], "leader")
                for n in c.nodes:
                    self.assertEqual(page.links.get(n.id), f"https://{n.http[0]}:{n.http[1]}/")
        finally:
            shutil.rmtree(profile, ignore_errors=True)
            shutil.rmtree(certs, ignore_errors=True)

    def test_narrow_screen_renders_members(self):
        # A phone-sized window: the page must still render every member (as cards).
        self.assertTrue(os.access(CHROMIUM, os.X_OK), "chromium is required")
        profile = tempfile.mkdtemp(prefix="raftkv-chromium-")
        try:
            with harness.Cluster(nodes=1) as c:
                c.wait_ready()
                n = c.nodes[0]
                url = f"http://{n.http[0]}:{n.http[1]}/"

                def rendered():
                    out = subprocess.run(chromium_args(profile) + [
                        "--virtual-time-budget=3000", "--window-size=360,740", "--dump-dom",
                        url], capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
                    p = MemberRows()
                    p.feed(out.stdout.decode(errors="replace"))
                    return p if p.rows else None

                page = harness.wait_until(rendered, 60, interval=0.5, what="a member row")
                self.assertEqual(page.rows[0]["role"], "leader")
                self.assertEqual(page.leader_card["id"], 1)
        finally:
            shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--screenshot")
    args, rest = parser.parse_known_args()
    SCREENSHOT = args.screenshot
    sys.argv = [sys.argv[0]] + rest
    harness.main()
