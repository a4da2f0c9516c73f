"""The command line and process life cycle (docs/config.md): exit codes, check-config, the data-dir
lock, port in use, clean shutdown on SIGTERM/SIGINT and recovery of data across restarts."""

import os
import signal
import socket
import subprocess
import tempfile
import time

import harness


def run(*args, timeout=30):
    return subprocess.run([harness.BINARY, *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


class CommandLine(harness.TestCase):
    def test_version_and_help_exit_zero(self):
        r = run("--version")
        self.assertEqual(r.returncode, 0)
        self.assertRegex(r.stdout, r"^raftkv \d+\.\d+\.\d+")
        r = run("--help")
        self.assertEqual(r.returncode, 0)
        self.assertIn("serve", r.stdout)
        self.assertIn("check-config", r.stdout)

    def test_bad_command_line_exits_two(self):
        self.assertEqual(run().returncode, 2)
        self.assertEqual(run("frobnicate").returncode, 2)
        self.assertEqual(run("serve").returncode, 2)  # --config is required

    def test_check_config_prints_effective_config(self):
        etc = os.path.join(os.path.dirname(__file__), "..", "..", "etc", "node2.toml")
        r = run("check-config", "--config", etc)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("id = 2", r.stdout)
        self.assertIn("election_ticks = 30", r.stdout)  # defaults filled in
        self.assertIn("max_memory_mb = 1024", r.stdout)

    def test_check_config_names_file_key_and_line(self):
        with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
            f.write('[node]\nid = 1\ndata_dir = "x"\n[limits]\nmax_conections = 5\n')
            path = f.name
        try:
            r = run("check-config", "--config", path)
            self.assertEqual(r.returncode, 2)
            self.assertIn(f"{path}:5", r.stderr)
            self.assertIn("limits.max_conections", r.stderr)
            r = run("serve", "--config", path)
            self.assertEqual(r.returncode, 2)
            self.assertIn("limits.max_conections", r.stderr)
        finally:
            os.unlink(path)

    def test_missing_config_file_exits_two(self):
        r = run("check-config", "--config", "/nonexistent/raftkv.toml")
        self.assertEqual(r.returncode, 2)
        self.assertIn("/nonexistent/raftkv.toml", r.stderr)


class Lifecycle(harness.TestCase):
    def test_sigterm_and_sigint_shut_down_cleanly_and_data_survives(self):
        with harness.Cluster(nodes=1) as c:
            c.wait_ready()
            n = c.nodes[0]
            self.assertEqual(harness.mc(n.memcached, b"set k 5 0 3\r\nabc\r\n"), b"STORED\r\n")
            started = time.monotonic()
            self.assertEqual(n.stop(), 0, n.log())
            self.assertLess(time.monotonic() - started, 5.0)
            self.assertIn("stopped cleanly", n.log())
            n.start()
            c.wait_ready()
            self.assertEqual(harness.mc(n.memcached, b"get k\r\n"), b"VALUE k 5 3\r\nabc\r\nEND\r\n")
            n.proc.send_signal(signal.SIGINT)
            self.assertEqual(n.proc.wait(timeout=5), 0)

    def test_second_process_on_same_data_dir_is_refused(self):
        with harness.Cluster(nodes=1) as c:
            c.wait_ready()
            n = c.nodes[0]
            # Same data_dir, other ports: only the lock can stop it.
            with open(n.config_path) as f:
                config = f.read()
            for addr in (n.memcached, n.cs733, n.http):
                config = config.replace(f"{addr[0]}:{addr[1]}", f"127.0.0.1:{harness.free_port()}")
            other = os.path.join(c.dir, "second.toml")
            with open(other, "w") as f:
                f.write(config)
            r = run("serve", "--config", other)
            self.assertEqual(r.returncode, 1, r.stderr)
            self.assertIn("locked", r.stderr)
            # The first node is unharmed.
            self.assertEqual(harness.mc(n.memcached, b"set a 0 0 1\r\n1\r\n"), b"STORED\r\n")

    def test_port_in_use_exits_one_with_reason(self):
        with harness.Cluster(nodes=1) as c:
            n = c.nodes[0]
            blocker = socket.socket()
            blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            blocker.bind(n.memcached)
            blocker.listen()
            try:
                n.kill()
                n.start()
                code = n.proc.wait(timeout=10)
                self.assertEqual(code, 1)
                self.assertIn("cannot listen on memcached address", n.log())
            finally:
                blocker.close()

    def test_startup_logs_config_and_election(self):
        with harness.Cluster(nodes=1) as c:
            c.wait_ready()
            log = c.nodes[0].log()
            self.assertIn("starting: config", log)
            self.assertIn("won the election", log)
            self.assertRegex(log, r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO  node=1 ")


if __name__ == "__main__":
    harness.main()
