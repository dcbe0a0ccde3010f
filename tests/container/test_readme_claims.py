"""README.md claims only what the suites test (issue 16): the replica count it names is the compose
file's, which is the number of upstream servers in deploy/nginx.conf and the number of replicas
tests/lb/lb_test.py runs behind that nginx; and it says the compose file and the manifests are
checked statically, not run."""
import os
import re

import yaml

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5}


def read(*p):
    with open(os.path.join(REPO, *p)) as f:
        return f.read()


def test_readme_replica_count_is_what_compose_declares_and_lb_test_runs():
    readme = " ".join(read("README.md").split())
    said = re.findall(r"nginx in front of (\w+) replicas", readme)
    assert said, "README no longer says how many replicas the compose file runs: update this test"
    compose = yaml.safe_load(read("docker-compose.yml"))
    n_compose = sum(1 for s in compose["services"] if re.fullmatch(r"explaind-\d+", s))
    n_nginx = len(re.findall(r"^\s*server explaind-\d+:8080 ", read("deploy", "nginx.conf"), re.M))
    m = re.search(r"reps = \[Replica\(n, models, work\) for n in \(([\d, ]+)\)\]", read("tests", "lb", "lb_test.py"))
    assert m, "tests/lb/lb_test.py: the replica list moved: update this test"
    n_lb = len([x for x in m.group(1).split(",") if x.strip()])
    assert [WORDS.get(w, -1) for w in said] == [n_compose] * len(said), (said, n_compose)
    assert n_compose == n_nginx == n_lb, (n_compose, n_nginx, n_lb)


def test_readme_says_compose_and_manifests_are_only_checked_statically():
    readme = " ".join(read("README.md").split())
    assert "tested by `make test` with buildah and a real nginx" not in readme
    assert re.search(r"compose file and the manifests themselves are only checked statically", readme)
