"""Cold import as Lambda sees it (docs/ARCHITECTURE.md, "Budgets": <= 150 ms per function; the built
artifact, read-only, no bytecode written).

Lambda unpacks a function's package to /var/task and each layer to /opt, read-only, and imports the
handler's module in a fresh interpreter: bytecode the artifacts do not ship is compiled at every cold
start. This benchmark measures the BUILT artifacts that way:

1. `sam build --parameter-overrides PythonRuntime=python3.X` for this interpreter's version, into a
   temporary directory (or `--build-dir DIR`: an existing build, e.g. `.aws-sam/build` of `make build`);
2. per function, copies of .aws-sam/build/<Function> and of the CoreLayer's python/ directory, made
   read-only (chmod -R a-w);
3. per run a fresh interpreter (`-I -S`: no site-packages, no PYTHONPATH, no user site) that writes
   no bytecode (`-B`, since -I ignores PYTHONDONTWRITEBYTECODE=1, and chmod does not stop root) with
   sys.path = [function, layer, standard library]; the time of `import app` is taken inside it, so
   interpreter start-up is not counted (Lambda reports it apart);
4. the median of --runs runs per function, with the shipped bytecode and with it removed (what the
   same artifacts cost without it).

The standard library is this interpreter's own (with its bytecode, as in the Lambda runtime). Before
the timed import the probe imports what Lambda's bootstrap has already imported by then
(RUNTIME_PREIMPORTS: json, logging, re, decimal, traceback, ...), so they are not counted twice. Each
figure is wall time (what Lambda's Init Duration shows); the CPU time of the same import is printed
beside it: on a machine other work shares, the wall time grows and the CPU time hardly does.

    .venv/bin/python bench/bench_cold_import.py [--runs 9] [--build-dir DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BUDGET_MS = 150.0
# What the Lambda Python runtime's bootstrap has imported before it imports the handler: the standard
# modules `import awslambdaric.bootstrap` loads (awslambdaric 4.2.2, the runtime interface client of
# the AWS base images for Python). Lambda's INIT of the function does not pay for them again.
RUNTIME_PREIMPORTS = [
    "collections", "contextlib", "decimal", "enum", "functools", "importlib", "itertools", "json",
    "linecache", "logging", "math", "numbers", "operator", "os", "re", "reprlib", "string", "textwrap",
    "threading", "tokenize", "traceback", "types", "warnings", "weakref",
]  # fmt: skip


def template_functions() -> list[str]:
    """Every function of template.yaml (the one source of the function list)."""
    from labelloop_local.stack.template import load_template

    return sorted(load_template(REPO / "template.yaml").resources_of_type("AWS::Serverless::Function"))


_PROBE = """
import sys, time
for name in {preimports!r}:
    __import__(name)
sys.path[:0] = [{function_dir!r}, {layer_dir!r}]
leaked = [entry for entry in sys.path if "site-packages" in entry]
if leaked:
    raise SystemExit(f"site-packages on sys.path: {{leaked}}")
started, cpu_started = time.perf_counter(), time.process_time()
import app
elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
import json
print(json.dumps({{
    "ms": elapsed * 1000, "cpu_ms": cpu * 1000, "modules": len(sys.modules),
    "orjson": "orjson" in sys.modules,
}}))
"""


def sam_build(build_dir: Path) -> None:
    sam = shutil.which("sam") or str(REPO / ".venv-sam" / "bin" / "sam")
    runtime = f"python{sys.version_info.major}.{sys.version_info.minor}"
    command = [
        sam, "build",
        "--template-file", str(REPO / "template.yaml"),
        "--build-dir", str(build_dir),
        "--cache-dir", str(build_dir.parent / "sam-cache"),
        "--parameter-overrides", f"PythonRuntime={runtime}",
    ]  # fmt: skip
    print(f"building with: {' '.join(command[1:])}", file=sys.stderr)
    env = {**os.environ, "SAM_CLI_TELEMETRY": "0"}
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False, env=env)
    if result.returncode != 0:
        raise SystemExit(f"sam build failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")


def read_only_copy(source: Path, target: Path, with_bytecode: bool) -> Path:
    ignore = None if with_bytecode else shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(source, target, symlinks=False, ignore=ignore)
    for directory, _, files in os.walk(target):
        for name in files:
            os.chmod(os.path.join(directory, name), 0o444)
        os.chmod(directory, 0o555)
    return target


def make_writable(root: Path) -> None:
    for directory, _, _ in os.walk(root):
        os.chmod(directory, 0o755)


def cold_imports(function_dir: Path, layer_dir: Path, runs: int, function: str) -> list[dict[str, Any]]:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONDONTWRITEBYTECODE": "1",
        "LAMBDA_TASK_ROOT": str(function_dir),
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_LAMBDA_FUNCTION_NAME": function,
        "POWERTOOLS_SERVICE_NAME": function,
        "POWERTOOLS_METRICS_NAMESPACE": "Labelloop",
    }
    probe = _PROBE.format(
        preimports=RUNTIME_PREIMPORTS, function_dir=str(function_dir), layer_dir=str(layer_dir)
    )
    samples = []
    for _ in range(runs):
        result = subprocess.run(
            [sys.executable, "-I", "-S", "-B", "-c", probe],
            cwd=function_dir,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise SystemExit(f"{function} does not import:\n{result.stderr[-3000:]}")
        samples.append(json.loads(result.stdout.strip().splitlines()[-1]))
    return samples


def bytecode_files(root: Path) -> int:
    return sum(1 for _ in root.rglob("*.pyc"))


def layer_cache_tags(layer_dir: Path) -> set[str]:
    return {path.name.split(".")[-2] for path in layer_dir.rglob("*.pyc")}


def measure(build_dir: Path, runs: int) -> dict[str, Any]:
    layer = build_dir / "CoreLayer" / "python"
    tags = layer_cache_tags(layer)
    if tags != {sys.implementation.cache_tag}:
        raise SystemExit(
            f"the build's bytecode is for {sorted(tags) or 'no interpreter'}, this Python is "
            f"{sys.implementation.cache_tag}: build with PythonRuntime=python{sys.version_info.major}."
            f"{sys.version_info.minor}, or run this benchmark with the runtime's Python"
        )
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="labelloop-cold-") as tmp:
        root = Path(tmp)
        try:
            for with_bytecode in (True, False):
                variant = "with_bytecode" if with_bytecode else "without_bytecode"
                layer_copy = read_only_copy(layer, root / variant / "opt" / "python", with_bytecode)
                for function in template_functions():
                    function_copy = read_only_copy(
                        build_dir / function, root / variant / "var" / function, with_bytecode
                    )
                    before = bytecode_files(root / variant)
                    samples = cold_imports(function_copy, layer_copy, runs, function)
                    if bytecode_files(root / variant) != before:
                        raise SystemExit(f"{function}: an import wrote bytecode into the artifacts")
                    timings = [sample["ms"] for sample in samples]
                    entry = results.setdefault(function, {})
                    entry[f"{variant}_ms"] = round(statistics.median(timings), 1)
                    entry[f"{variant}_min_ms"] = round(min(timings), 1)
                    entry[f"{variant}_runs_ms"] = [round(t, 1) for t in timings]
                    entry[f"{variant}_cpu_ms"] = round(statistics.median(s["cpu_ms"] for s in samples), 1)
                    entry["modules"] = samples[0]["modules"]
                    entry["imports_orjson"] = samples[0]["orjson"]
        finally:
            make_writable(root)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=9, help="fresh interpreters per function and variant")
    parser.add_argument("--build-dir", type=Path, help="an existing sam build (default: build one now)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args(argv)
    if args.runs < 7:
        parser.error("--runs must be at least 7")
    with tempfile.TemporaryDirectory(prefix="labelloop-build-") as tmp:
        build_dir = args.build_dir
        if build_dir is None:
            build_dir = Path(tmp) / "build"
            sam_build(build_dir)
        functions = measure(build_dir.resolve(), args.runs)
    worst = max(entry["with_bytecode_ms"] for entry in functions.values())
    document = {
        "benchmark": "cold-import",
        "budget_ms": BUDGET_MS,
        "python": sys.version.split()[0],
        "cache_tag": sys.implementation.cache_tag,
        "runs": args.runs,
        "within_budget": worst <= BUDGET_MS,
        "functions": functions,
    }
    if args.json:
        print(json.dumps(document, indent=2))
        return 0
    print(
        f"cold import of `app` on the built, read-only artifacts (median of {args.runs} fresh interpreters,"
        f" {sys.implementation.cache_tag}; budget <= {BUDGET_MS:.0f} ms)"
    )
    print(f"  {'function':<26} {'shipped bytecode (cpu)':>24} {'without bytecode (cpu)':>24}  modules")
    for function, entry in functions.items():
        shipped = f"{entry['with_bytecode_ms']:.1f} ms ({entry['with_bytecode_cpu_ms']:.1f})"
        without = f"{entry['without_bytecode_ms']:.1f} ms ({entry['without_bytecode_cpu_ms']:.1f})"
        print(
            f"  {function:<26} {shipped:>24} {without:>24}  {entry['modules']:>7}"
            f"{'  (imports orjson)' if entry['imports_orjson'] else ''}"
        )
    print(f"within budget: {document['within_budget']} (slowest {worst:.1f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
