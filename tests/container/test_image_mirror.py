"""image_test.py takes the Debian mirror for its debootstrap'ed base only from this machine's apt
sources (both formats of sources.list(5)), and fails with the reason when none serves bookworm:
no built-in public host to fall back on (issue 16)."""
import os
import re
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import image_test  # noqa: E402


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_deb822_sources_give_the_mirror_and_the_security_mirror(tmp_path):
    f = write(tmp_path, "debian.sources",
              "Types: deb\n# a comment\nURIs: http://mirror.example/debian/\nSuites: bookworm bookworm-updates\n"
              "Components: main contrib\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
              "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\nComponents: main\n")
    assert image_test.debian_mirror(image_test.apt_sources([f])) == \
        ("http://mirror.example/debian", "http://mirror.example/debian-security")


def test_snapshot_uri_without_a_trailing_debian_is_taken_as_is(tmp_path):
    f = write(tmp_path, "snap.sources", "Types: deb\nURIs: http://snapshot.example/archive/debian/20250520T000000Z\n"
                                        "Suites: bookworm\nComponents: main\n")
    assert image_test.debian_mirror(image_test.apt_sources([f]))[0] == \
        "http://snapshot.example/archive/debian/20250520T000000Z"


def test_one_line_format_with_options_and_disabled_stanzas_skipped(tmp_path):
    off = write(tmp_path, "off.sources", "Enabled: no\nTypes: deb\nURIs: http://off.example/debian\n"
                                         "Suites: bookworm\nComponents: main\n")
    other = write(tmp_path, "node.sources", "Types: deb\nURIs: https://deb.nodesource.example/node_20.x\n"
                                            "Suites: nodistro\nComponents: main\n")
    lst = write(tmp_path, "sources.list", "# deb http://commented.example/debian bookworm main\n"
                                          "deb-src http://src.example/debian bookworm main\n"
                                          "deb [arch=amd64 signed-by=/k.gpg] http://one.example/debian bookworm main\n")
    assert image_test.debian_mirror(image_test.apt_sources([off, other, lst])) == ("http://one.example/debian", None)


def test_no_bookworm_source_fails_with_the_reason(tmp_path):
    other = write(tmp_path, "node.sources", "Types: deb\nURIs: https://deb.nodesource.example/node_20.x\n"
                                            "Suites: nodistro\nComponents: main\n")
    for sources in ([], image_test.apt_sources([other])):
        with pytest.raises(image_test.CannotRun, match="no apt source of this machine serves `bookworm main`"):
            image_test.debian_mirror(sources)


def test_no_hard_coded_public_mirror_and_no_skip_exit():
    src = open(image_test.__file__).read()
    code = re.sub(r'""".*?"""', "", src, flags=re.S)
    assert not re.search(r"https?://[a-z0-9.-]+\.(org|net|com)", code), "a mirror host is hard-coded"
    assert not re.search(r"\b77\b", code), "a suite that cannot run must fail, not exit 77 (SKIPPED)"
