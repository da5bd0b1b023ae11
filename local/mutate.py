"""`make mutate`: mutation testing (mutmut) of the key lifecycle, record sealing, the session
cache, the global master key ring and the adapters' error classification, over the fast tests.

mutmut names a mutant after its file's path and activates it by the module's import name, so
the two must agree: the packages are staged at .mutate/<phase>/src/<package> (src/ is the
prefix mutmut drops), where pytest's pythonpath points. Two phases, each with the tests of its
modules: "units" (sealing, session cache, adapters) and "lifecycle" (the rest of tenant_kms but
OUT_OF_SCOPE, so a module split out of service.py is in scope without a change here). One
DynamoDB Local serves every mutant's short test session.

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

# Modules of tenant_kms that are neither lifecycle, sealing nor the session cache.
OUT_OF_SCOPE = [
    "api.py",
    "credentials.py",
    "errors.py",
    "identity.py",
    "idempotency.py",
    "invoke.py",
    "models.py",
    "observability.py",
    "provider_config.py",
    "providers.py",
    "rotation.py",
    "schedule.py",
    "settings.py",
    "storage.py",
    "tracing.py",
    "untrusted_json.py",
]
UNIT_MODULES = ["sealing.py", "keyring.py"]
ADAPTER_MODULES = ["base.py", "global_wrap.py", "aws_kms.py", "gcp_kms.py", "azure_kv.py"]


@dataclass(frozen=True)
class Phase:
    """One mutmut run over some modules with the tests that exercise them (per-module selection:
    sealing mutants never wait for a lifecycle test that also happens to seal a record)."""

    name: str
    mutants: list[str]  # mutmut names or globs
    tests: list[str]
    only_mutate: list[str]
    do_not_mutate: list[str]
    share: float  # of the time budget, when the phase before it used all of its own


PHASES = [
    Phase(
        "units",
        # Record sealing, the session cache, the checks every unwrap passes (base), the global
        # ring, and the functions that call an SDK error a refusal (seals) or unavailable (never).
        [
            "tenant_kms.sealing.*",
            "tenant_kms.keyring.*",
            "kms_wrapping.base.*",
            "kms_wrapping.global_wrap.*",
            "kms_wrapping.aws_kms.x__normalise__mutmut_*",
            "kms_wrapping.aws_kms.x__key_store_fault__mutmut_*",
            "kms_wrapping.gcp_kms.x__is_checksum_complaint__mutmut_*",
            "kms_wrapping.gcp_kms.x__token_refusal__mutmut_*",
            "kms_wrapping.gcp_kms.xǁGcpKmsWrapperǁ_call__mutmut_*",
            "kms_wrapping.azure_kv.x_entra_failure__mutmut_*",
            "kms_wrapping.azure_kv.xǁAzureKeyVaultWrapperǁ_send__mutmut_*",
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
        [f"src/tenant_kms/{m}" for m in UNIT_MODULES] + [f"src/kms_wrapping/{m}" for m in ADAPTER_MODULES],
        [],
        0.3,
    ),
    Phase(
        "lifecycle",
        # The whole package but what OUT_OF_SCOPE and the units phase name: service.py and
        # whatever is split out of it (records, jobs, unsealing), and erasure.
        ["tenant_kms.*"],
        # Integration tests picked one by one: the quickest that cover each lifecycle step (the
        # others take tens of seconds each under load, or scan every tenant in the shared
        # tables, slower with every mutant's leftovers).
        [
            "tests/integration/test_key_lifecycle_rows.py",
            "tests/integration/test_lifecycle.py",
            "tests/integration/test_probe_failure.py",
            "tests/integration/test_sealing.py::test_unseal_lifts_the_seal_only_when_the_active_version_unwraps",
            "tests/integration/test_sealing.py::test_a_successful_configure_unseals",
            "tests/integration/test_erasure.py::test_a_tenant_id_reused_after_erasure_never_sees_the_old_key",
            "tests/integration/test_repeat_configure.py::test_an_identical_configure_reverifies_and_provisions_nothing",
            "tests/integration/test_key_usage_budget.py::test_a_version_seals_at_most_its_budget_then_the_next_version_takes_over",
        ],
        ["src/tenant_kms/*"],
        [f"src/tenant_kms/{m}" for m in OUT_OF_SCOPE + UNIT_MODULES],
        1.0,
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
        "do_not_mutate": phase.do_not_mutate,
        "also_copy": ALSO,
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
            except subprocess.TimeoutExpired:
                print(f"\n{phase.name}: its share of the budget is spent; the rest counts as not run")
                os.killpg(process.pid, signal.SIGINT)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()


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
