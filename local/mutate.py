"""`make mutate`: mutation testing (mutmut) of the key lifecycle, tenant sealing and unsealing,
record sealing, the session cache, the global master key ring and the adapters' error
classification, over the fast tests.

mutmut names a mutant after its file's path and activates it by the module's import name, so
the two must agree: the packages are staged at .mutate/<phase>/src/<package> (src/ is the
prefix mutmut drops), where pytest's pythonpath points. Three phases, each with the tests of its
code: "units" (record sealing, session cache, wrap checks, global ring, AWS and Google token
classification) with unit tests, "clouds" (how the Cloud KMS and Key Vault adapters classify
what the wire answers) with the clouds tests that make those answers, and "lifecycle"
(configure, provision, verify, unwrap, seal, unseal, destroy, erase) with a few integration
tests. mutmut runs, per mutant, only the tests that reach the mutated function; the session
plugin (MUTANT_SESSION) runs the quickest first, so a killed mutant costs one short test, and
gives every mutant's session tables of its own in the one DynamoDB Local of the run.

Bounded by --budget-minutes; mutants not reached by then count as not run. Not part of CI.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from dynamodb_local import DynamoDBLocal

ROOT = Path(__file__).resolve().parent.parent
STAGE = ROOT / ".mutate"
MUTMUT = ROOT / ".tools-mutate" / "bin" / "mutmut"
PACKAGES = {
    "tenant_kms": ROOT / "shared" / "tenant_kms",
    "kms_wrapping": ROOT / "layers" / "providers" / "kms_wrapping",
}
# What the tests read besides the packages (handlers, sample events, the tables' definitions).
ALSO = ["tests", "local", "functions", "events", "template.yaml", "README.md"]
# Copied to the staged tree's root as conftest.py: pytest loads it in every session mutmut starts.
MUTANT_SESSION = ROOT / "local" / "mutant_session.py"


@dataclass(frozen=True)
class Phase:
    """One mutmut run over some functions with the tests that can reach them."""

    name: str
    mutants: list[str]  # mutmut names or globs
    tests: list[str]
    only_mutate: list[str]
    share: float  # of the time budget, when the phase before it used all of its own


PHASES = [
    Phase(
        "units",
        # Record sealing, the session cache, the checks every unwrap passes (base), the global
        # ring, and the functions that call an AWS or Google token error a refusal (seals) or
        # unavailable (never seals).
        [
            "tenant_kms.sealing.*",
            "tenant_kms.keyring.*",
            "kms_wrapping.base.*",
            "kms_wrapping.global_wrap.*",
            "kms_wrapping.aws_kms.x__normalise__mutmut_*",
            "kms_wrapping.aws_kms.x__key_store_fault__mutmut_*",
            "kms_wrapping.gcp_kms.x__token_refusal__mutmut_*",
        ],
        [
            "tests/unit/test_record_sealing.py",
            "tests/unit/test_stored_formats.py",
            "tests/unit/test_session_cache.py",
            "tests/unit/test_global_wrap.py",
            "tests/unit/test_global_wrap_ring.py",
            "tests/unit/test_aws_kms_adapter.py",
            "tests/unit/test_current_key_id.py",
            "tests/unit/test_federation.py",
        ],
        [
            "src/tenant_kms/sealing.py",
            "src/tenant_kms/keyring.py",
            "src/kms_wrapping/base.py",
            "src/kms_wrapping/global_wrap.py",
            "src/kms_wrapping/aws_kms.py",
            "src/kms_wrapping/gcp_kms.py",
        ],
        0.15,
    ),
    Phase(
        "clouds",
        # What Cloud KMS and Key Vault answer, read as a refusal, a fault to retry, or our own
        # plumbing: only the real SDKs against the wire fakes make those answers.
        [
            "kms_wrapping.gcp_kms.x__is_checksum_complaint__mutmut_*",
            "kms_wrapping.gcp_kms.xǁGcpKmsWrapperǁ_call__mutmut_*",
            "kms_wrapping.azure_kv.x_entra_failure__mutmut_*",
            "kms_wrapping.azure_kv.xǁAzureKeyVaultWrapperǁ_send__mutmut_*",
        ],
        [
            "tests/integration/clouds/test_gcp.py::test_a_ciphertext_under_another_binding_is_refused_as_cloud_kms_refuses_it",
            "tests/integration/clouds/test_gcp.py::test_the_customers_refusal_seals",
            "tests/integration/clouds/test_gcp.py::test_outages_and_damage_answer_503_after_the_configured_attempts_and_never_seal",
            "tests/integration/clouds/test_gcp.py::test_a_damaged_request_is_retried_and_then_succeeds",
            "tests/integration/clouds/test_gcp.py::test_a_token_cloud_kms_no_longer_accepts_is_exchanged_again_not_sealed",
            "tests/integration/clouds/test_gcp.py::test_tokens_cloud_kms_keeps_refusing_answer_503_after_the_configured_attempts",
            "tests/integration/clouds/test_azure.py::test_refusals_seal_and_faults_answer_503_with_nothing_sealed_or_cached",
            "tests/integration/clouds/test_azure.py::test_a_token_the_vault_no_longer_takes_is_exchanged_again_and_never_seals",
            "tests/integration/clouds/test_azure.py::test_a_vault_that_keeps_refusing_our_tokens_answers_503_and_never_seals",
            "tests/integration/clouds/test_azure.py::test_a_vault_that_does_not_answer_in_time_is_unavailable",
            "tests/integration/clouds/test_azure.py::test_a_key_in_another_entra_tenant_than_configured_is_refused_at_configure",
        ],
        ["src/kms_wrapping/gcp_kms.py", "src/kms_wrapping/azure_kv.py"],
        0.25,
    ),
    Phase(
        "lifecycle",
        # Configure (validate, probe, apply, provision), provision, verify, unwrap, seal on a
        # refusal, unseal, destroy a retired version, erase the keys. Not the views (config and
        # version views are the API's shape) nor the rewrap jobs, record writes and sweeps: their
        # own machinery, tested in their own tiers.
        [
            *(
                f"tenant_kms.service.xǁTenantKmsǁ{method}__mutmut_*"
                for method in (
                    "_config",
                    "require_config",
                    "version_row",
                    "wrapper",
                    "_record_verify_error",
                    "_probe",
                    "configure",
                    "_reconfirm",
                    "provision",
                    "_existing_config",
                    "add_version",
                    "_retiring",
                    "verify",
                    "destroy_version",
                    "erase_keys",
                    "unsealed",
                    "open_key",
                    "unwrap_row",
                    "_seal",
                    "unwrap",
                )
            ),
            "tenant_kms.service.x__same_usage_rows__mutmut_*",
            "tenant_kms.unsealing.xǁUnsealingǁunseal__mutmut_*",
            "tenant_kms.erasure.x_erase_keys__mutmut_*",
            "tenant_kms.erasure.x__fence__mutmut_*",
            "tenant_kms.erasure.x__destroy_wrapped_keys__mutmut_*",
        ],
        [
            "tests/integration/test_key_lifecycle_rows.py",
            "tests/integration/test_probe_failure.py",
            "tests/integration/test_sealing.py::test_unseal_lifts_the_seal_only_when_the_active_version_unwraps",
            "tests/integration/test_repeat_configure.py::test_an_identical_configure_reverifies_and_provisions_nothing",
            # The one provider here that reads the config and the tenant id: customer AWS on moto.
            "tests/integration/aws/test_customer_role.py::test_a_failing_verify_records_the_error_and_changes_no_key",
        ],
        ["src/tenant_kms/service.py", "src/tenant_kms/unsealing.py", "src/tenant_kms/erasure.py"],
        0.6,
    ),
]


def _mirror(source: Path, target: Path) -> None:
    """target becomes a copy of source; unchanged files keep their mtime (mutmut's cache key)."""
    if source.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists() or target.read_bytes() != source.read_bytes():
            shutil.copy2(source, target)
        return
    wanted = set()
    for path in source.rglob("*"):
        if "__pycache__" in path.parts or path.is_dir():
            continue
        relative = path.relative_to(source)
        wanted.add(relative)
        _mirror(path, target / relative)
    if target.exists():
        for path in target.rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts and path.relative_to(target) not in wanted:
                path.unlink()


def _pyproject(phase: Phase) -> str:
    """The repository's pytest settings, importing the staged packages, and mutmut's."""
    text = (ROOT / "pyproject.toml").read_text()
    start = text.index("[tool.pytest.ini_options]")
    end = text.index("\n[", start + 1)
    pytest_section = text[start:end].replace('"shared", "layers/providers"', '"src"')
    assert '"src"' in pytest_section, "pyproject.toml's pytest pythonpath changed: update local/mutate.py"
    mutmut = {
        "source_paths": [f"src/{package}" for package in PACKAGES],
        "only_mutate": phase.only_mutate,
        "also_copy": [*ALSO, "conftest.py"],
        "pytest_add_cli_args_test_selection": phase.tests,
        "pytest_add_cli_args": ["-p", "no:cacheprovider"],
        "process_isolation": "forkserver",
        "use_git_change_detection": False,
    }
    lines = ["[tool.mutmut]"] + [f"{key} = {json.dumps(value)}" for key, value in mutmut.items()]
    return pytest_section + "\n\n" + "\n".join(lines) + "\n"


def stage(phase: Phase) -> Path:
    tree = STAGE / phase.name
    tree.mkdir(parents=True, exist_ok=True)
    for package, source in PACKAGES.items():
        _mirror(source, tree / "src" / package)
        # A module moved or removed since the last run must not linger in mutmut's copy.
        copied = tree / "mutants" / "src" / package
        for path in copied.rglob("*.py") if copied.exists() else ():
            if not (source / path.relative_to(copied)).exists():
                path.unlink()
    for name in ALSO:
        _mirror(ROOT / name, tree / name)
        shutil.rmtree(tree / "mutants" / name, ignore_errors=True)  # mutmut copies these afresh
    (tree / "pyproject.toml").write_text(_pyproject(phase))
    _mirror(MUTANT_SESSION, tree / "conftest.py")
    return tree


def results(phases: list[Phase] = PHASES) -> dict[str, str]:
    """mutmut's outcome by mutant name, of the mutants in scope."""
    from mutmut.stats import status_by_exit_code

    outcomes: dict[str, str] = {}
    for phase in phases:
        for meta in (STAGE / phase.name / "mutants" / "src").rglob("*.meta"):
            for name, code in json.loads(meta.read_text())["exit_code_by_key"].items():
                if any(fnmatch.fnmatch(name, pattern) for pattern in phase.mutants):
                    outcomes[name] = status_by_exit_code[code]
    return outcomes


def unchecked(phase: Phase, *, again: bool = False) -> list[str]:
    """What an earlier run left to do (with ``again``, its survivors and untested too): given names, mutmut
    runs every mutant they match again."""
    done = ("killed", "timeout") + (() if again else ("survived", "no tests"))
    outcomes = results([phase])
    return sorted(name for name, outcome in outcomes.items() if outcome not in done) if outcomes else phase.mutants


def report(out: Path | None) -> int:
    outcomes = results()
    killed = sorted(n for n, o in outcomes.items() if o in ("killed", "timeout"))
    survived = sorted(n for n, o in outcomes.items() if o == "survived")
    untested = sorted(n for n, o in outcomes.items() if o == "no tests")
    not_run = sorted(set(outcomes) - set(killed) - set(survived) - set(untested))
    checked = len(killed) + len(survived) + len(untested)
    score = 100.0 * len(killed) / checked if checked else 0.0
    print(f"mutants: {len(outcomes)}, killed {len(killed)}, survived {len(survived)}, no test reaches {len(untested)}")
    print(f"not run (budget, or mutmut's other outcomes): {len(not_run)}")
    print(f"score: {score:.1f}% killed of {checked} checked")
    for name in survived + untested:
        print(("survived  " if name in survived else "no tests  ") + name)
    if out:
        out.write_text(
            json.dumps(
                {
                    "score": round(score, 1),
                    "killed": killed,
                    "survived": survived,
                    "no_tests": untested,
                    "not_run": not_run,
                },
                indent=1,
                ensure_ascii=False,
            )
        )
    return 0


def run(phases: list[Phase], patterns: list[str], budget_minutes: float, max_children: int, again: bool) -> None:
    deadline = time.monotonic() + budget_minutes * 60
    with DynamoDBLocal() as dynamodb:
        env = {**os.environ, "DYNAMODB_LOCAL_ENDPOINT": dynamodb.endpoint}
        for number, phase in enumerate(phases):
            left = deadline - time.monotonic()
            # Time the phases after this one would be left, so a slow phase cannot starve them.
            later = sum(p.share for p in phases[number + 1 :])
            allowed = left * phase.share / (phase.share + later) if later else left
            print(f"== {phase.name}: {allowed / 60:.1f} min at most")
            names = patterns or unchecked(phase, again=again)
            if not names:
                print(f"== {phase.name}: every mutant checked (--fresh to start over)")
                continue
            tree = stage(phase)
            command = [str(MUTMUT), "run", "--max-children", str(max_children), *names]
            process = subprocess.Popen(command, cwd=tree, env=env, start_new_session=True)
            try:
                process.wait(timeout=max(allowed, 60))
            except (subprocess.TimeoutExpired, KeyboardInterrupt) as stopped:
                if isinstance(stopped, subprocess.TimeoutExpired):
                    print(f"\n{phase.name}: its share of the budget is spent; the rest counts as not run")
                os.killpg(process.pid, signal.SIGINT)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
                if isinstance(stopped, KeyboardInterrupt):
                    raise


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mutants", nargs="*", help="mutmut names or globs to run again (with --phase)")
    parser.add_argument("--phase", choices=[p.name for p in PHASES], help="only this phase")
    parser.add_argument("--budget-minutes", type=float, default=float(os.environ.get("MUTATE_BUDGET_MINUTES", 20)))
    parser.add_argument("--max-children", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--report-only", action="store_true", help="summarise the last run")
    parser.add_argument("--fresh", action="store_true", help="forget earlier runs' outcomes")
    parser.add_argument("--again", action="store_true", help="run the survivors again too (after adding tests)")
    parser.add_argument("--json", type=Path, help="also write the summary here")
    args = parser.parse_args()
    started = time.monotonic()
    if not args.report_only:
        if args.mutants and not args.phase:
            parser.error("name the --phase whose mutants these are")
        phases = [p for p in PHASES if args.phase in (None, p.name)]
        if args.fresh:
            for phase in phases:
                shutil.rmtree(STAGE / phase.name, ignore_errors=True)
        run(phases, args.mutants, args.budget_minutes, args.max_children, args.again)
        print(f"ran {time.monotonic() - started:.0f} s")
    return report(args.json)


if __name__ == "__main__":
    sys.exit(main())
