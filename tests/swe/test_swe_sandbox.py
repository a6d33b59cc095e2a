"""The SWE sandbox: log parsers (pure) and, against the real Docker daemon, layered images and
confined test runs on a tiny git repo made here (base commit with a bug, fix commit)."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest

from skycurate.errors import SkycurateError
from skycurate.sandbox import (
    BuildError,
    InstallError,
    PatchError,
    SandboxError,
    build_env_image,
    build_instance_image,
    cleanup,
    disk_usage,
    ensure_base_image,
    image_exists,
    list_containers,
    parse_junit_xml,
    parse_pytest_log,
    prepare_checkout,
    run_tests,
)
from skycurate.sandbox.image_build import KEEP_LABEL, OWNER_LABEL, RUN_LABEL, cleanup_selects
from skycurate.sandbox.logs import extract_test_output, split_nodeid
from skycurate.schemas.swe import EnvRecipe, SandboxLimits

# ====================================================================== log parsers (no Docker)

PYTEST_RA_LOG = """\
============================= test session starts ==============================
platform linux -- Python 3.11.2, pytest-8.4.2, pluggy-1.7.0
rootdir: /testbed
collected 9 items

tests/test_x.py .F.sxX.E                                                  [ 88%]
tests/test_y.py E                                                         [100%]

==================================== PASSES ====================================
=========================== short test summary info ============================
PASSED tests/test_x.py::test_a
PASSED tests/test_x.py::test_param[a b - c]
PASSED tests/test_x.py::TestK::test_m[1-[x]]
FAILED tests/test_x.py::test_b - AssertionError: assert [1] == [2]
FAILED tests/test_x.py::test_p[x y] - ValueError: boom - again
SKIPPED [1] tests/test_x.py:40: no network
XFAIL tests/test_x.py::test_xf - known bug
XPASS tests/test_x.py::test_xp unexpectedly passing
ERROR tests/test_x.py::test_e - RuntimeError: fixture broke
PASSED tests/test_x.py::test_teardown
ERROR tests/test_x.py::test_teardown - OSError: teardown
ERROR tests/test_y.py - ImportError: No module named 'zzz'
FAILED (failures=1)
=========== 2 failed, 4 passed, 1 skipped, 1 xfailed, 1 xpassed, 3 errors in 0.12s ===========
"""


def test_parse_pytest_ra_summary():
    st = parse_pytest_log(PYTEST_RA_LOG)
    assert st == {
        "tests/test_x.py::test_a": "PASSED",
        "tests/test_x.py::test_param[a b - c]": "PASSED",
        "tests/test_x.py::TestK::test_m[1-[x]]": "PASSED",
        "tests/test_x.py::test_b": "FAILED",
        "tests/test_x.py::test_p[x y]": "FAILED",
        "tests/test_x.py:40": "SKIPPED",
        "tests/test_x.py::test_xf": "XFAIL",
        "tests/test_x.py::test_xp": "XPASS",
        "tests/test_x.py::test_e": "ERROR",
        "tests/test_x.py::test_teardown": "ERROR",       # the worse report wins
        "tests/test_y.py": "ERROR",                       # collection error
    }                                                     # unittest's "FAILED (failures=1)" ignored


def test_parse_pytest_verbose_and_xdist_lines():
    log = ("tests/test_a.py::test_one PASSED                                    [ 33%]\n"
           "tests/test_a.py::test_two[a b] FAILED                               [ 66%]\n"
           "tests/test_a.py::test_three SKIPPED (no db)                          [100%]\n"
           "[gw1] [ 50%] PASSED tests/test_b.py::test_x[1]\n"
           "\x1b[32mPASSED\x1b[0m tests/test_c.py::test_colour\n")
    assert parse_pytest_log(log) == {
        "tests/test_a.py::test_one": "PASSED", "tests/test_a.py::test_two[a b]": "FAILED",
        "tests/test_a.py::test_three": "SKIPPED", "tests/test_b.py::test_x[1]": "PASSED",
        "tests/test_c.py::test_colour": "PASSED"}


def test_split_nodeid_and_section():
    assert split_nodeid("t.py::test_a - msg") == "t.py::test_a"
    assert split_nodeid("t.py::test_a") == "t.py::test_a"
    assert split_nodeid("t.py::test[a] - assert [1] == [2]") == "t.py::test[a]"
    assert split_nodeid("t.py::test_x reason text") == "t.py::test_x"
    log = "noise PASSED t.py::nope\n>>>>> Start Test Output\nPASSED t.py::yes\n>>>>> End Test Output (exit 0)\n"
    assert parse_pytest_log(extract_test_output(log)) == {"t.py::yes": "PASSED"}


JUNIT_XUNIT1 = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" errors="1" failures="1" skipped="2" tests="6">
<testcase classname="tests.test_x" name="test_a" file="tests/test_x.py" line="1" time="0.001"/>
<testcase classname="tests.test_x.TestK" name="test_m[a b]" file="tests/test_x.py" line="5"/>
<testcase classname="tests.test_x" name="test_b" file="tests/test_x.py" line="9">
  <failure message="assert 1 == 2">trace</failure></testcase>
<testcase classname="tests.test_x" name="test_e" file="tests/test_x.py"><error message="boom"/></testcase>
<testcase classname="tests.test_x" name="test_s" file="tests/test_x.py"><skipped message="no"/></testcase>
<testcase classname="tests.test_x" name="test_xf" file="tests/test_x.py">
  <skipped type="pytest.xfail" message="bug"/></testcase>
</testsuite></testsuites>"""


def test_parse_junit_xml():
    assert parse_junit_xml(JUNIT_XUNIT1) == {
        "tests/test_x.py::test_a": "PASSED", "tests/test_x.py::TestK::test_m[a b]": "PASSED",
        "tests/test_x.py::test_b": "FAILED", "tests/test_x.py::test_e": "ERROR",
        "tests/test_x.py::test_s": "SKIPPED", "tests/test_x.py::test_xf": "XFAIL"}
    xunit2 = ('<testsuite><testcase classname="pkg.tests.test_y.TestC" name="test_1"/>'
              '<testcase classname="tests.test_z" name="test_2"><failure/></testcase></testsuite>')
    assert parse_junit_xml(xunit2, test_files=["pkg/tests/test_y.py"]) == {
        "pkg/tests/test_y.py::TestC::test_1": "PASSED", "tests/test_z.py::test_2": "FAILED"}
    with pytest.raises(ValueError):
        parse_junit_xml('<!DOCTYPE x [<!ENTITY a "b">]><testsuite/>')


def test_unsupported_python_is_one_clear_error():
    with pytest.raises(SandboxError, match=r"Python 3\.10 cannot be built locally.*3\.9, 3\.11, 3\.13"):
        ensure_base_image("3.10")
    assert issubclass(SandboxError, SkycurateError) and issubclass(InstallError, BuildError)


def test_daemon_down_is_one_clear_error(monkeypatch):
    from skycurate.sandbox import client

    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    box: dict = {}

    def probe():                                 # a fresh thread: no cached client
        try:
            client()
        except SandboxError as exc:
            box["err"] = str(exc)

    t = threading.Thread(target=probe)
    t.start()
    t.join()
    assert box["err"].startswith("Docker daemon not reachable at unix:///nonexistent/docker.sock: start dockerd")
    assert "\n" not in box["err"]


# ====================================================================== real daemon

SESSION = {"skycurate.test": f"sandbox-{os.getpid()}-{uuid.uuid4().hex[:8]}"}
TEST_CMD = "python -m pytest -rA --tb=no -p no:cacheprovider"
RECIPE = EnvRecipe(requirements=["six==1.17.0"], name="sandbox-test")


def run(image: str, **kw):
    kw.setdefault("labels", SESSION)
    kw.setdefault("limits", SandboxLimits(timeout_s=120))
    return run_tests(image, **kw)


@pytest.fixture(scope="module")
def tiny_repo(tmp_path_factory):
    """calc: base commit with a bug in add() (tag v0.1), fix commit with its test (tag v0.2), and a
    later branch commit. Gold patch = calc/, test patch = tests/."""
    import git

    root = tmp_path_factory.mktemp("repos") / "calc"
    repo = git.Repo.init(root, initial_branch="main")
    with repo.config_writer() as cw:
        cw.set_value("user", "name", "t").set_value("user", "email", "t@example.org")

    def write(rel: str, text: str) -> None:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        repo.index.add([rel])

    write("pyproject.toml", '[build-system]\nrequires = ["setuptools>=64"]\n'
          'build-backend = "setuptools.build_meta"\n\n[project]\nname = "calc"\nversion = "0.1"\n\n'
          '[tool.setuptools]\npackages = ["calc"]\n')
    write("calc/__init__.py", "def add(a, b):\n    return a - b\n\n\ndef sub(a, b):\n    return a - b\n")
    write("tests/test_calc.py", "from calc import sub\n\n\ndef test_sub():\n    assert sub(3, 1) == 2\n")
    base = repo.index.commit("calc with add and sub").hexsha
    repo.create_tag("v0.1")
    write("calc/__init__.py", "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n")
    write("tests/test_calc.py", "from calc import add, sub\n\n\ndef test_sub():\n    assert sub(3, 1) == 2\n"
          "\n\ndef test_add():\n    assert add(2, 2) == 4\n")
    fix = repo.index.commit("fix add (fixes #1)").hexsha
    repo.create_tag("v0.2")
    repo.create_head("feature", fix).checkout()
    write("NOTES.md", "later work\n")
    later = repo.index.commit("later").hexsha
    patch = repo.git.diff(base, fix, "--", "calc") + "\n"
    test_patch = repo.git.diff(base, fix, "--", "tests") + "\n"
    return SimpleNamespace(path=str(root), base=base, fix=fix, later=later, patch=patch, test_patch=test_patch)


@pytest.fixture(scope="module")
def env_image(base_image) -> str:
    return build_env_image(RECIPE)


@pytest.fixture(scope="module")
def instance(env_image, tiny_repo):
    info = build_instance_image(env_image, tiny_repo.path, tiny_repo.base, RECIPE.install, "SkyTest__Calc-1")
    yield info
    cleanup(prefix="skycurate/instance:skytest__calc-1-", select=None)


def test_base_image(base_image, docker_client):
    import re

    assert re.fullmatch(r"skycurate/base:py3\.11-[0-9a-f]{12}", base_image)
    cfg = docker_client.images.get(base_image).attrs["Config"]
    assert cfg["User"] == "sky" and cfg["WorkingDir"] == "/testbed"
    assert any(e.startswith("PATH=/opt/venv/bin:") for e in cfg["Env"])
    t0 = time.monotonic()
    assert ensure_base_image() == base_image                    # present: reused, not rebuilt
    assert time.monotonic() - t0 < 5


def test_env_image_is_shared_by_a_recipe(env_image, docker_client):
    assert env_image == f"skycurate/env:{RECIPE.env_key()}"
    first = docker_client.images.get(env_image).id
    t0 = time.monotonic()
    same = EnvRecipe(requirements=["six==1.17.0"], name="other-name", install=["true"])  # same env_key
    assert build_env_image(same) == env_image
    assert time.monotonic() - t0 < 5                             # reused, not rebuilt
    assert docker_client.images.get(env_image).id == first


def test_instance_image(instance, env_image, tiny_repo, docker_client):
    assert instance.tag.startswith("skycurate/instance:skytest__calc-1-")
    assert instance.digest.startswith("sha256:") and instance.env_tag == env_image
    assert 0 < instance.checkout_bytes <= instance.extra_bytes_over_env
    # a tiny repo: the few KB of egg-info/.pth the install adds dominate; see the benchmark for real sizes
    assert instance.extra_bytes_over_env <= instance.checkout_bytes * 1.1 + 64_000
    again = build_instance_image(env_image, tiny_repo.path, tiny_repo.base, RECIPE.install, "SkyTest__Calc-1")
    assert again.tag == instance.tag and again.digest == instance.digest and not again.built
    history = docker_client.images.get(instance.tag).history()
    env_layers = len(docker_client.images.get(env_image).history())
    assert len(history) == env_layers + 1                        # one layer over the shared env image


def test_no_future_commit_in_the_image(instance, tiny_repo):
    cmd = (f"for c in {tiny_repo.fix} {tiny_repo.later}; do git cat-file -e $c 2>/dev/null "
           f"&& echo LEAK $c || echo ABSENT $c; done; echo HEAD $(git rev-parse HEAD); "
           f"echo TAGS $(git tag -l); echo REMOTES $(git remote | wc -l); echo REFS $(git for-each-ref "
           f"--format='%(refname)'); echo REFLOG $(git reflog | wc -l); echo STATUS $(git status --porcelain | wc -l)")
    res = run(instance.tag, test_cmd=cmd)
    out = res.test_output
    assert res.exit_code == 0, out
    assert f"ABSENT {tiny_repo.fix}" in out and f"ABSENT {tiny_repo.later}" in out and "LEAK" not in out
    assert f"HEAD {tiny_repo.base}" in out
    assert "TAGS v0.1\n" in out                                  # ancestor tag kept, v0.2 gone
    assert "REMOTES 0" in out and "REFS refs/tags/v0.1\n" in out and "REFLOG 0" in out
    assert "STATUS 0" in out                                     # the install left the tree clean


def test_fail_to_pass(instance, tiny_repo, tmp_path):
    pre = run(instance.tag, patches=[tiny_repo.test_patch], test_cmd=TEST_CMD,
              test_files=["tests/test_calc.py"], log_path=tmp_path / "pre.log")
    assert pre.statuses == {"tests/test_calc.py::test_add": "FAILED", "tests/test_calc.py::test_sub": "PASSED"}
    assert pre.exit_code == 1 and not pre.timed_out
    assert "FAILED tests/test_calc.py::test_add" in (tmp_path / "pre.log").read_text()
    post = run(instance.tag, patches=[tiny_repo.test_patch, tiny_repo.patch], test_cmd=TEST_CMD,
               test_files=["tests/test_calc.py"], junit=True)
    assert post.statuses == {"tests/test_calc.py::test_add": "PASSED", "tests/test_calc.py::test_sub": "PASSED"}
    assert post.exit_code == 0


CONFINEMENT_TEST = '''\
import os
import socket

import pytest


def test_not_root():
    assert os.getuid() != 0 and os.geteuid() != 0


def test_no_network():
    with pytest.raises(OSError):
        socket.create_connection(("HOST", PORT), timeout=3)


def test_writable_testbed_and_tmp(tmp_path):
    (tmp_path / "a").write_text("a")
    with open("/testbed/scratch.txt", "w") as fh:
        fh.write("x")


def test_venv_read_only():
    with pytest.raises(PermissionError):
        open("/opt/venv/evil.pth", "w")


def test_home():
    assert os.environ["HOME"] == "/home/sky" and os.access(os.environ["HOME"], os.W_OK)
'''


def new_file_patch(path: str, text: str) -> str:
    lines = text.splitlines()
    body = "".join(f"+{line}\n" for line in lines)
    return (f"diff --git a/{path} b/{path}\nnew file mode 100644\n--- /dev/null\n+++ b/{path}\n"
            f"@@ -0,0 +1,{len(lines)} @@\n{body}")


def test_confined_non_root_no_network(instance, docker_client):
    """``test_no_network`` dials a listener on the host at the Docker bridge's address, which any
    container with a network reaches (an offline host changes nothing). The control run with the
    network on must fail it, so the check can fail; the sandboxed run must pass it, and the listener
    must have seen no connection."""
    import socket

    listener = socket.socket()
    listener.bind(("0.0.0.0", 0))
    listener.listen(8)
    listener.settimeout(2)
    test = CONFINEMENT_TEST.replace("HOST", _bridge_gateway(docker_client)).replace(
        "PORT", str(listener.getsockname()[1]))
    try:
        kw = {"patches": [new_file_patch("tests/test_env.py", test)], "test_cmd": TEST_CMD,
              "test_files": ["tests/test_env.py"]}
        control = run(instance.tag, limits=SandboxLimits(timeout_s=120, network=True), **kw)
        assert control.statuses["tests/test_env.py::test_no_network"] == "FAILED", control.test_output
        listener.accept()[0].close()     # the control's connection arrived
        res = run(instance.tag, **kw)
        assert set(res.statuses.values()) == {"PASSED"} and len(res.statuses) == 5, res.test_output
        with pytest.raises(TimeoutError):
            listener.accept()
    finally:
        listener.close()


def test_timeout_kills_the_container(instance):
    hang = ("import time\n\n\ndef test_quick():\n    pass\n\n\n"
            "def test_hang():\n    time.sleep(600)\n")
    t0 = time.monotonic()
    res = run(instance.tag, patches=[new_file_patch("tests/test_hang.py", hang)],
              test_cmd="python -u -m pytest -v -rA --tb=no -p no:cacheprovider",
              test_files=["tests/test_hang.py"], limits=SandboxLimits(timeout_s=4))
    assert res.timed_out and res.exit_code is None
    assert time.monotonic() - t0 < 30
    assert res.statuses == {"tests/test_hang.py::test_quick": "PASSED"}   # partial results survive
    assert "Timed out after 4s" in res.log_text
    assert list_containers(SESSION) == []



HOSTILE_TESTS = '''
import os
import socket
import time

HOST, PORT = "HOST_ADDR", HOST_PORT


def test_dial_the_host():
    with socket.create_connection((HOST, PORT), timeout=3):
        pass


def test_write_outside_the_work_folder():
    for path in ("/etc/skycurate-pwned", "/opt/venv/pwned", "/usr/local/bin/pwned", "/pwned"):
        try:
            open(path, "w").write("x")
        except OSError:
            continue
        raise AssertionError(f"wrote {path}")


def test_fork_bomb():
    children = 0
    try:
        while children < 100_000:
            if os.fork() == 0:
                time.sleep(60)
                os._exit(0)
            children += 1
    except OSError:
        pass
    print(f"FORKED {children}")
    assert children < 100_000
'''

MEMORY_HOG = '''
def test_eat_memory():
    hoard = []
    while True:
        hoard.append(b"x" * (32 << 20))   # written, not merely reserved
'''


def test_a_hostile_test_suite_is_contained_and_reported(instance, docker_client):
    """Tests that dial a listener on the host, write outside the work folder, fork-bomb and eat
    memory: every attempt fails inside the container, the run reports it (statuses; OOM kill), the
    listener sees no connection, the daemon still answers and no container is left."""
    listener = socket.socket()
    listener.bind(("0.0.0.0", 0))
    listener.listen(8)
    listener.settimeout(1)
    tests = HOSTILE_TESTS.replace("HOST_ADDR", _bridge_gateway(docker_client)).replace(
        "HOST_PORT", str(listener.getsockname()[1]))
    limits = SandboxLimits(timeout_s=120, memory="256m", pids=64)
    try:
        res = run(instance.tag, patches=[new_file_patch("tests/test_hostile.py", tests)], test_cmd=TEST_CMD + " -s",
                  test_files=["tests/test_hostile.py"], limits=limits)
        assert res.statuses == {"tests/test_hostile.py::test_dial_the_host": "FAILED",
                                "tests/test_hostile.py::test_write_outside_the_work_folder": "PASSED",
                                "tests/test_hostile.py::test_fork_bomb": "PASSED"}, res.log_text[-3000:]
        forked = int(res.log_text.split("FORKED ")[1].split()[0])
        assert forked < limits.pids                    # the pids limit stopped the bomb
        with pytest.raises(TimeoutError):
            listener.accept()                          # nothing reached the host
    finally:
        listener.close()
    hog = run(instance.tag, patches=[new_file_patch("tests/test_hog.py", MEMORY_HOG)], test_cmd=TEST_CMD,
              test_files=["tests/test_hog.py"], limits=limits)
    assert hog.oom_killed and not hog.timed_out and "tests/test_hog.py::test_eat_memory" not in hog.statuses
    assert "Out of memory: the container was killed by the OOM killer" in hog.log_text
    assert docker_client.ping() and list_containers(SESSION) == []


class _DaemonProxy:
    """A unix socket relaying to the real daemon's that drops the first connection asking to wait
    for a container, as a daemon restarting at that moment does; everything else goes through."""

    def __init__(self, path: str, target: str = "/var/run/docker.sock", drop_wait: bool = True):
        self.path, self.target, self.dropped, self.connections = path, target, 0 if drop_wait else 1, 0
        self.server = socket.socket(socket.AF_UNIX)
        self.server.bind(path)
        self.server.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            self.connections += 1
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(self.target)
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, requests: bool) -> None:
        try:
            while data := src.recv(65536):
                if requests and not self.dropped and b"/wait" in data:
                    self.dropped += 1
                    break
                dst.sendall(data)
        except OSError:
            pass
        for end in (src, dst):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.server.close()


def test_a_broken_daemon_connection_is_an_error_not_a_timed_out_run(instance, tmp_path):
    """The connection waiting on a run breaks long before its timeout: that is the daemon's
    failure (``SandboxError``, so no verdict is journalled), not a test run that timed out."""
    from skycurate.sandbox.daemon import use_host

    proxy = _DaemonProxy(str(tmp_path / "docker.sock"))
    try:
        with use_host(f"unix://{proxy.path}"), pytest.raises(SandboxError) as err:
            run(instance.tag, test_cmd="sleep 30", limits=SandboxLimits(timeout_s=60))
    finally:
        proxy.close()
    assert proxy.dropped == 1
    assert str(err.value).startswith("Docker daemon not reachable") and "during sandbox run" in str(err.value)
    assert list_containers(SESSION) == []


def test_validation_spreads_over_every_docker_host(base_image, monkeypatch, tmp_path):
    """Two Docker hosts in the config (the second a socket relaying to the same daemon: a second
    daemon is not at hand): each gets its base image checked and its own share of the candidates."""
    from skycurate.sandbox.daemon import daemon_address
    from skycurate.schemas.swe import ValidationConfig
    from skycurate.stages.swe import validate as V

    proxy = _DaemonProxy(str(tmp_path / "docker.sock"), drop_wait=False)
    seen: list[str] = []

    def validate_candidate(c, cfg, log_dir, python="auto"):
        seen.append(daemon_address())
        time.sleep(0.3)   # both workers get work
        return V._reject(c, V.STAGE_VALIDATE, "no_fail_to_pass", "nothing fails before the fix", log_dir)

    monkeypatch.setattr(V, "validate_candidate", validate_candidate)
    hosts = ["unix:///var/run/docker.sock", f"unix://{proxy.path}"]
    cands = [{"instance_id": f"acme__calc-{n}", "repo": "acme/calc", "base_commit": f"{n:040x}", "patch": f"p{n}",
              "test_patch": f"t{n}", "test_files": ["tests/test_calc.py"]} for n in range(4)]
    try:
        outcomes = V.validate_all(cands, ValidationConfig(workers=1, docker_hosts=hosts), tmp_path / "work")
    finally:
        proxy.close()
    assert len(outcomes) == 4 and sorted(set(seen)) == sorted(hosts) and len(seen) == 4
    assert proxy.connections >= 1     # the second host's base image was checked through it


def test_non_utf8_output_is_decoded_with_replacement(instance, tmp_path):
    test = "import os\n\n\ndef test_bytes():\n    os.write(1, b'\\xff\\xfe not utf-8 \\xc3\\x28 end\\n')\n"
    res = run(instance.tag, patches=[new_file_patch("tests/test_bytes.py", test)],
              test_cmd="printf 'latin1: \\xe9t\\xe9\\n'; " + TEST_CMD + " -s",
              test_files=["tests/test_bytes.py"], log_path=tmp_path / "bytes.log")
    assert "\ufffd" in res.log_text and "not utf-8" in res.log_text
    assert res.statuses == {"tests/test_bytes.py::test_bytes": "PASSED"}
    assert "\ufffd" in (tmp_path / "bytes.log").read_text(encoding="utf-8")


def test_patch_that_does_not_apply(instance, tiny_repo):
    bad = ("diff --git a/calc/__init__.py b/calc/__init__.py\n--- a/calc/__init__.py\n+++ b/calc/__init__.py\n"
           "@@ -1,2 +1,2 @@\n def mul(a, b):\n-    return a / b\n+    return a * b\n")
    with pytest.raises(PatchError) as info:
        run(instance.tag, patches=[tiny_repo.test_patch, bad], test_cmd=TEST_CMD)
    assert info.value.index == 1 and info.value.files == ["calc/__init__.py"]
    assert list_containers(SESSION) == []


def test_fuzzy_patch_falls_back_to_patch(instance):
    # context lines off by one line of offset and one changed context line: git apply refuses, patch --fuzz applies
    fuzzy = ("--- a/calc/__init__.py\n+++ b/calc/__init__.py\n@@ -1,3 +1,3 @@\n def add(a, b):\n"
             "-    return a - b\n+    return a + b\n # a comment that is not there\n")
    res = run(instance.tag, patches=[fuzzy], test_cmd="python -c 'import calc; print(\"ADD\", calc.add(2, 2))'")
    assert "ADD 4" in res.test_output and "trying patch --fuzz" in res.log_text


def test_parallel_runs(instance, tiny_repo):
    def one(_):
        return run(instance.tag, patches=[tiny_repo.test_patch, tiny_repo.patch], test_cmd=TEST_CMD,
                   test_files=["tests/test_calc.py"]).statuses

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(one, range(2)))
    assert all(set(r.values()) == {"PASSED"} and len(r) == 2 for r in results)


def test_container_removed_on_interrupt_and_daemon_errors(instance, monkeypatch):
    import docker.models.containers
    import requests.exceptions

    def interrupt(self, *a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(docker.models.containers.Container, "wait", interrupt)
    with pytest.raises(KeyboardInterrupt):
        run(instance.tag, test_cmd="sleep 30")
    assert list_containers(SESSION) == []

    def gone(self, *a, **kw):
        raise requests.exceptions.ConnectionError("Connection aborted: daemon went away")

    monkeypatch.setattr(docker.models.containers.Container, "start", gone)
    with pytest.raises(SandboxError, match="Docker daemon not reachable"):
        run(instance.tag, test_cmd="true")
    monkeypatch.undo()
    assert list_containers(SESSION) == []


def test_install_failure_is_an_install_error(env_image, tiny_repo):
    with pytest.raises(InstallError) as info:
        build_instance_image(env_image, tiny_repo.path, tiny_repo.base,
                             ["pip install --no-deps --no-build-isolation -e .", "python -c 'import nosuchmod'"],
                             "skytest__calc-broken")
    assert "nosuchmod" in info.value.log_tail and "exit 86" in str(info.value)
    assert not any(row.tag.startswith("skycurate/instance:skytest__calc-broken") for row in disk_usage().images)


def test_prepare_checkout_from_a_bare_clone(tiny_repo, tmp_path):
    """Host only: a bare cache works as the source, and nothing after base_commit is copied."""
    import git

    bare = tmp_path / "cache.git"
    git.Repo.clone_from(tiny_repo.path, bare, bare=True)
    dest = tmp_path / "co"
    size = prepare_checkout(bare, tiny_repo.base, dest)
    r = git.Repo(dest)
    assert size > 0 and r.head.commit.hexsha == tiny_repo.base and r.head.is_detached
    assert [t.name for t in r.tags] == ["v0.1"] and not r.remotes and not r.branches
    for sha in (tiny_repo.fix, tiny_repo.later):
        with pytest.raises(git.GitCommandError):
            r.git.cat_file("-e", sha)
    assert (dest / "calc" / "__init__.py").read_text().count("a - b") == 2


def test_disk_usage_cleanup_and_no_leftover_containers(instance):
    usage = disk_usage()
    kinds = {row.tag: row.kind for row in usage.images}
    assert kinds.get(instance.tag) == "instance" and "base" in kinds.values() and "env" in kinds.values()
    row = next(r for r in usage.images if r.tag == instance.tag)
    assert row.unique_bytes == instance.extra_bytes_over_env
    assert usage.total_bytes >= max(r.size_bytes for r in usage.images)
    assert usage.rootfs_cache_bytes > 0
    removed = cleanup(prefix="skycurate/instance:skytest__calc-1-", select=None)
    assert removed == [instance.tag] and not image_exists(instance.tag)
    assert list_containers(SESSION) == []
    assert not [n for n in _skycurate_container_names() if n.startswith("skycurate-build-")]


@pytest.mark.parametrize("labels, run, include_kept, selected", [
    ({RUN_LABEL: "r1", OWNER_LABEL: f"{socket.gethostname()}:{os.getpid()}"}, None, False, False),  # alive
    ({RUN_LABEL: "r1", OWNER_LABEL: f"{socket.gethostname()}:{os.getpid()}"}, "r1", False, True),   # named
    ({RUN_LABEL: "r1", OWNER_LABEL: f"{socket.gethostname()}:{os.getpid()}"}, "r2", False, False),
    ({RUN_LABEL: "r1", OWNER_LABEL: "another-host:1"}, None, False, False),       # cannot tell: kept
    ({RUN_LABEL: "r1", OWNER_LABEL: "another-host:1"}, "r1", False, True),
    ({}, None, False, True),                                                     # made before owners
    ({RUN_LABEL: "r1", KEEP_LABEL: "1"}, "r1", False, False),                    # kept image
    ({RUN_LABEL: "r1", KEEP_LABEL: "1"}, "r1", True, True),
    ({KEEP_LABEL: "1"}, None, False, False),
    ({KEEP_LABEL: "1"}, None, True, True),
])
def test_what_cleanup_selects(labels, run, include_kept, selected):
    assert cleanup_selects(labels, run, include_kept) is selected


def test_cleanup_removes_only_what_ended_runs_left(base_image):
    """Two runs' containers, made by the sandbox's own runner: one owned by this (live) process, one
    by a process that has ended. The default cleanup removes only the latter; ``run=`` the former."""
    import subprocess
    import sys
    from functools import partial

    from skycurate.sandbox.run import cleanup_containers, run_program

    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    tag = uuid.uuid4().hex[:8]
    owners = {"live": os.getpid(), "ended": ended.pid}
    labels = {k: {**SESSION, RUN_LABEL: f"{k}-{tag}", OWNER_LABEL: f"{socket.gethostname()}:{pid}"}
              for k, pid in owners.items()}
    with ThreadPoolExecutor(2) as pool:
        runs = {k: pool.submit(run_program, base_image, {}, ["sleep", "120"], SandboxLimits(timeout_s=150), labels=v)
                for k, v in labels.items()}
        try:
            deadline = time.monotonic() + 60
            while not all(list_containers({RUN_LABEL: f"{k}-{tag}"}) for k in owners):
                assert time.monotonic() < deadline, "the sleep containers did not appear"
                time.sleep(0.2)
            assert cleanup_containers() >= 1
            assert list_containers({RUN_LABEL: f"ended-{tag}"}) == []
            assert len(list_containers({RUN_LABEL: f"live-{tag}"})) == 1     # a live run's container stays
        finally:
            assert cleanup_containers(partial(cleanup_selects, run=f"live-{tag}")) <= 1
        for fut in runs.values():
            fut.exception(timeout=60)   # each run ends once its container is gone (how is not the point)
    assert list_containers(SESSION) == []


def _skycurate_container_names() -> list[str]:
    from skycurate.sandbox import client

    return [c.name for c in client().containers.list(all=True, filters={"label": "skycurate=1"})]




# The repository's install runs untrusted code (setup.py, build backends): it reports what it could do.
BUILD_PROBE = r'''
import json, os, socket, sys

def first(*paths):
    for p in paths:
        if os.path.exists(p):
            return open(p).read().strip()
    return None

status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5).close()
    net = "connected"
except OSError as e:
    net = f"errno {e.errno}"
json.dump({"uid": os.getuid(), "cap_eff": status["CapEff"].strip(), "no_new_privs": status["NoNewPrivs"].strip(),
           "memory": first("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"),
           "pids": first("/sys/fs/cgroup/pids.max", "/sys/fs/cgroup/pids/pids.max"),
           "venv_writable": os.access("/opt/venv/lib", os.W_OK), "net": net}, open("probe.json", "w"))
'''


def _bridge_gateway(docker_client) -> str:
    """The host's address on Docker's default bridge (not every daemon reports it: then the subnet's first)."""
    import ipaddress

    config = docker_client.networks.get("bridge").attrs["IPAM"]["Config"][0]
    return config.get("Gateway") or str(next(ipaddress.ip_network(config["Subnet"]).hosts()))


def test_the_install_step_is_confined_and_offline_unless_it_must_download(env_image, tiny_repo, docker_client):
    """A listener on the host's bridge address: the repo's install (a probe) cannot reach it when the
    recipe installs with --no-deps, and can when pip must download (the control that proves the check
    can fail). Either way it runs as the build user, without capabilities, under memory/pids limits."""
    import json
    import socket

    gateway = _bridge_gateway(docker_client)
    listener = socket.socket()
    listener.bind((gateway, 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    probe = f"python - {gateway} {port} <<'EOF'\n{BUILD_PROBE}\nEOF"
    results = {}
    try:
        for name, install in (("offline", ["pip install --no-deps --no-build-isolation -e .", probe]),
                              ("download", ["pip install --no-build-isolation -e .", probe])):
            info = build_instance_image(env_image, tiny_repo.path, tiny_repo.base, install, f"skytest__probe-{name}")
            res = run(info.tag, test_cmd="cat probe.json")
            results[name] = json.loads(res.test_output[res.test_output.index("{"):].splitlines()[0])
    finally:
        listener.close()
        cleanup(prefix="skycurate/instance:skytest__probe-", select=None)
    for name, got in results.items():
        assert got["uid"] == 1001 and got["cap_eff"] == "0000000000000000" and got["no_new_privs"] == "1", name
        assert got["memory"] == str(4 * 1024 ** 3) and got["pids"] == "2048" and got["venv_writable"], name
    assert results["offline"]["net"] == "errno 101"           # ENETUNREACH: no network at all
    assert results["download"]["net"] == "connected"


def test_a_failed_build_is_summed_up_by_its_cause_not_by_pips_closing_hint():
    from skycurate.sandbox.image_build import failure_cause as _last_line

    pip_log = ("  Preparing editable metadata (pyproject.toml): finished with status 'error'\n"
               "  error: subprocess-exited-with-error\n"
               "      TypeError: canonicalize_version() got an unexpected keyword argument 'strip_trailing_zero'\n"
               "  note: This error originates from a subprocess, and is likely not a problem with pip.\n"
               "error: metadata-generation-failed\n"
               "× Encountered error while generating package metadata.\n"
               "hint: See above for details.\n")
    assert _last_line(pip_log) == ("TypeError: canonicalize_version() got an unexpected keyword argument "
                                   "'strip_trailing_zero'")
    assert _last_line("Collecting x\nERROR: No matching distribution found for x==9.9\nhint: nope\n") == \
        "ERROR: No matching distribution found for x==9.9"
    assert _last_line("+ make\nbuilding\nld: cannot find -lfoo\n") == "ld: cannot find -lfoo"
    assert _last_line("  raise Failed(msg=reason)\nFailed: [pytest] section in setup.cfg files is no longer "
                      "supported\n>>>>> End Test Output (exit 1)\n").startswith("Failed: [pytest] section")
