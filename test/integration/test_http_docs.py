"""Runs the curl examples of docs/http-api.md against a fresh single node of the real binary
and compares their output with the text of the document.

Every ```console block is run, in order, on the same node. In a block, a line starting with
`$ ` is a command (run with bash, with the documented address 127.0.0.1:8081 replaced by the
node's); the lines up to the next command are its expected output. Only what cannot be the
same from run to run is normalised before comparing: loopback ports, uptime and clock, the
accounted byte size of the store, the process's memory, and how many reads the leader's
lease answered (a read made before the new leader's first heartbeat round confirmed its
lease takes a ReadIndex round instead, so the count depends on how soon the first read
comes)."""

import os
import re
import shutil
import subprocess

import harness

DOC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs", "http-api.md")
DOC_ADDRESS = "127.0.0.1:8081"


def examples(text):
    """[(command, expected output)] from the console blocks, in document order."""
    out = []
    for block in re.findall(r"```console\n(.*?)```", text, flags=re.S):
        command, expected = None, []
        for line in block.rstrip("\n").split("\n"):
            if line.startswith("$ "):
                if command is not None:
                    out.append((command, "\n".join(expected)))
                command, expected = line[2:], []
            else:
                assert command is not None, f"output before any command in: {block!r}"
                expected.append(line)
        if command is not None:
            out.append((command, "\n".join(expected)))
    return out


def normalise(text):
    text = text.replace("\r\n", "\n").rstrip("\n")
    text = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", text)
    text = re.sub(r'"(now_ms|uptime_s)": ?\d+', r'"\1": N', text)
    text = re.sub(r'"bytes": \d+', '"bytes": N', text)  # store accounting (kv object)
    text = re.sub(r'"(rss_\w*bytes)": \d+', r'"\1": N', text)  # process memory
    text = re.sub(r'"lease_reads": \d+', '"lease_reads": N', text)  # timing (see above)
    return text


class DocExamplesTest(harness.TestCase):
    def test_every_console_example_gives_the_documented_output(self):
        self.assertTrue(shutil.which("curl"), "curl is required")
        with open(DOC, encoding="utf-8") as f:
            cases = examples(f.read())
        self.assertGreater(len(cases), 20, "the document lost its examples")
        with harness.Cluster(nodes=1) as c:
            c.wait_ready()
            node = c.nodes[0]
            harness.wait_until(lambda: harness.http_request(node.http, "GET", "/readyz")[0]
                               == 200, 15, what="readyz")
            address = f"{node.http[0]}:{node.http[1]}"
            for command, expected in cases:
                run = subprocess.run(["bash", "-c", command.replace(DOC_ADDRESS, address)],
                                     capture_output=True, timeout=60)
                self.assertEqual(run.returncode, 0, f"{command}\n{run.stderr.decode()}")
                actual = run.stdout.decode("utf-8", errors="replace")
                self.assertEqual(normalise(actual), normalise(expected), f"$ {command}")


if __name__ == "__main__":
    harness.main()
