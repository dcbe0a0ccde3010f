"""README.md's examples run: every ```sh/```bash block with a curl command against
localhost:8080 is run with bash against the suite's server (port substituted), from a directory
where tests/ is the repository's. A block must exit 0 and print only JSON; curl runs with
--fail-with-body, so an HTTP error fails the block, unless the block says `# expect: <status>`,
in which case it must print a problem document with that status."""
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def blocks():
    text = README.read_text()
    return [b for b in re.findall(r"```(?:sh|bash)\n(.*?)```", text, re.S) if "curl" in b and "localhost:8080" in b]


def json_values(text):
    dec, i, out = json.JSONDecoder(), 0, []
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i == len(text):
            return out
        v, i = dec.raw_decode(text, i)
        out.append(v)


def test_readme_starts_with_make_run_and_make_test():
    first = re.search(r"```\n(.*?)```", README.read_text(), re.S).group(1)
    assert "make run" in first and "make test" in first


def test_readme_has_examples():
    assert len(blocks()) >= 8


@pytest.mark.parametrize("index", range(len(blocks())))
def test_readme_example_runs(server, repo, tmp_path, index):
    block = blocks()[index]
    expect = re.search(r"#\s*expect:\s*(\d{3})", block)
    script = block.replace("localhost:8080", f"127.0.0.1:{server.port}")
    prelude = "set -eu -o pipefail\n"
    if not expect:
        prelude += 'curl() { command curl --fail-with-body "$@"; }\n'
    os.symlink(repo / "tests", tmp_path / "tests")
    p = subprocess.run(["bash", "-c", prelude + script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, f"exit {p.returncode}\n--- block\n{block}\n--- stdout\n{p.stdout[:2000]}\n--- stderr\n{p.stderr}"
    values = json_values(p.stdout)
    assert values, f"no output:\n{block}"
    problems = [v for v in values if isinstance(v, dict) and str(v.get("type", "")).startswith("urn:explaind:problem:")]
    if expect:
        assert [v["status"] for v in problems] == [int(expect.group(1))] * len(values)
    else:
        assert not problems
    if "gradcam.png" in block:
        assert (tmp_path / "gradcam.png").read_bytes().startswith(b"\x89PNG")
