"""Under CI=true a skipped test fails the run with its reason; outside CI it stays a skip; xfail is left alone."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

#: The inner runs leave out the Playwright plugin: it keeps one global assertion scope, which the outer run holds.
INNER = ("-p", "no:playwright")

TESTS = '''
import pytest

@pytest.mark.skipif(True, reason="Debian chromium is not installed (apt-get install chromium)")
def test_marked():
    pass

@pytest.fixture
def slapd():
    pytest.skip("OpenLDAP is not installed (Debian packages slapd and ldap-utils)")

def test_fixture(slapd):
    pass

def test_inside():
    pytest.skip("psycopg2 is not installed")

@pytest.mark.xfail(reason="known")
def test_expected_failure():
    assert False

def test_runs():
    pass
'''


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest("from ci_skips import pytest_make_collect_report, pytest_runtest_makereport\n")
    pytester.makepyfile(test_things=TESTS, test_whole_module=(
        "import pytest\npytest.importorskip('a_package_that_is_not_installed')\n\ndef test_never():\n    pass\n"))
    return pytester


@pytest.mark.timeout(60)
def test_skips_fail_under_ci_naming_what_is_missing(project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    result = project.runpytest(*INNER, "-ra", "test_things.py")
    result.assert_outcomes(passed=1, failed=1, errors=2, xfailed=1)  # a skip in setup is an error
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    output = result.stdout.str()
    for missing in ("Debian chromium is not installed", "OpenLDAP is not installed", "psycopg2 is not installed"):
        assert f"under CI=true every test must run; install what is missing: {missing}" in output
    collected = project.runpytest(*INNER, "test_whole_module.py")
    assert collected.ret != pytest.ExitCode.OK
    assert "install what is missing: could not import 'a_package_that_is_not_installed'" in collected.stdout.str()


@pytest.mark.timeout(60)
def test_skips_stay_skips_outside_ci(project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    project.runpytest(*INNER, "test_things.py").assert_outcomes(passed=1, skipped=3, xfailed=1)
    project.runpytest(*INNER, "test_whole_module.py").assert_outcomes(skipped=1)
