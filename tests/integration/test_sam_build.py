"""`sam build` produces deployable artifacts: the CoreLayer is built for the runtime the template's
PythonRuntime selects (its bytecode and orjson), ships the pinned SDK, and every function imports
with only its own package, the layer and the standard library."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.paths import REPO_ROOT as REPO
from tests.support.template import repo_template

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BUILD_RUNTIME = "python3.11"  # the Python available here; python3.12 (the default) works the same way
CACHE_TAG = "cpython-" + BUILD_RUNTIME.removeprefix("python").replace(".", "")
CP_TAG = CACHE_TAG.replace("cpython-", "cp")
LAYER_MAKEFILE = REPO / "layers" / "core" / "Makefile"

IMPORT_CHECK = """
import importlib, json, sys
sys.path[:0] = json.loads(sys.argv[1])
module = importlib.import_module("app")
import labelloop_core
print(json.dumps({
    "has_handler": callable(getattr(module, "lambda_handler", None)),
    "core_from": labelloop_core.__file__,
    "local_loaded": sorted(name for name in sys.modules if name.startswith("labelloop_local")),
    "orjson_loaded": "orjson" in sys.modules,
    "site_packages": [entry for entry in sys.path if "site-packages" in entry],
}))
"""

SDK_CHECK = """
import json, sys
sys.path[:0] = json.loads(sys.argv[1])
import boto3, botocore, botocore.session
put = botocore.session.get_session().get_service_model("s3").operation_model("PutObject")
print(json.dumps({
    "boto3": [boto3.__version__, boto3.__file__],
    "botocore": [botocore.__version__, botocore.__file__],
    "put_object_if_none_match": "IfNoneMatch" in put.input_shape.members,
}))
"""


def _function_ids() -> list[str]:
    return sorted(repo_template().resources_of_type("AWS::Serverless::Function"))


def _dev_pin(name: str) -> str:
    text = (REPO / "requirements" / "dev.txt").read_text(encoding="utf-8")
    found = re.search(rf"^{re.escape(name)}==(\S+)", text, re.M)
    assert found, f"{name} is not pinned in requirements/dev.txt"
    return found[1]


def _bytecode_of(source: Path) -> Path:
    return source.parent / "__pycache__" / f"{source.stem}.{CACHE_TAG}.pyc"


def _isolated_python(code: str, path: list[Path], cwd: Path) -> dict[str, Any]:
    """Run `code` with -I -S (no site-packages, no PYTHONPATH, no user site: nothing of the dev
    environment leaks in), -B (no bytecode written into the build) and `path` first on sys.path; no
    AWS region or credentials either, so an import-time AWS call would fail here."""
    env = {"PATH": os.environ.get("PATH", ""), "LAMBDA_TASK_ROOT": str(cwd)}
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-B", "-c", code, json.dumps([str(entry) for entry in path])],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return report


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sam = shutil.which("sam")
    if sam is None:
        if os.environ.get("CI") == "true":
            pytest.fail("the SAM CLI is required in CI: put .venv-sam/bin on PATH (make integration does)")
        pytest.skip("SAM CLI not on PATH (make integration puts .venv-sam/bin first)")
    work = tmp_path_factory.mktemp("sam")
    command = [
        sam, "build",
        "--template-file", str(REPO / "template.yaml"),
        "--build-dir", str(work / "build"),
        "--cache-dir", str(work / "cache"),
        "--parameter-overrides", f"PythonRuntime={BUILD_RUNTIME}",
    ]  # fmt: skip
    env = {**os.environ, "SAM_CLI_TELEMETRY": "0"}
    result = subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900, check=False
    )
    assert result.returncode == 0, f"sam build failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return work / "build"


@pytest.fixture(scope="module")
def layer(build_dir: Path) -> Path:
    return build_dir / "CoreLayer" / "python"


def test_every_function_and_the_layer_were_built(build_dir: Path) -> None:
    built = {path.name for path in build_dir.iterdir() if path.is_dir()}
    assert set(_function_ids()) | {"CoreLayer"} <= built


def test_layer_ships_real_schema_and_template_files_and_no_local_code(layer: Path) -> None:
    schemas = layer / "labelloop_core" / "schemas"
    assert not schemas.is_symlink() and schemas.is_dir()
    shipped = sorted(path.name for path in schemas.glob("*.v1.json"))
    assert shipped == sorted(path.name for path in (REPO / "schemas").glob("*.v1.json"))
    assert all(not path.is_symlink() for path in schemas.iterdir())
    json.loads((schemas / "prediction.v1.json").read_text(encoding="utf-8"))
    assert (layer / "labelloop_core" / "templates" / "task_ui.liquid.html").is_file()
    for package in ("aws_lambda_powertools", "aws_xray_sdk", "fastjsonschema", "boto3", "botocore"):
        assert (layer / package).is_dir(), package
    assert not (layer / "labelloop_local").exists()
    assert not (layer / "bin").exists(), "console scripts are of no use in a layer"
    assert not [path for path in layer.rglob("*") if path.is_dir() and path.name in ("tests", "test")]


def test_layer_ships_bytecode_for_the_target_runtime_that_needs_no_source_check(layer: Path) -> None:
    sources = list(layer.rglob("*.py"))
    missing = [path for path in sources if not _bytecode_of(path).is_file()]
    assert sources and not missing, f"{len(missing)} of {len(sources)} modules lack {CACHE_TAG} bytecode"
    other_tags = {path.name.split(".")[-2] for path in layer.rglob("*.pyc")} - {CACHE_TAG}
    assert not other_tags, f"bytecode for other interpreters: {other_tags}"
    for module in ("labelloop_core/manifest/lines", "botocore/session", "boto3/__init__"):
        header = _bytecode_of(layer / f"{module}.py").read_bytes()[:16]
        # PEP 552: flags 0b01 = hash-based and not checked against the source (mtimes do not matter).
        assert int.from_bytes(header[4:8], "little") == 0b01, module
        if sys.implementation.cache_tag == CACHE_TAG:
            assert header[:4] == importlib.util.MAGIC_NUMBER, module


def test_layer_ships_orjson_built_for_the_target_cpython_on_manylinux_x86_64(layer: Path) -> None:
    extensions = sorted(path.relative_to(layer).as_posix() for path in layer.rglob("*.so"))
    assert extensions == [f"orjson/orjson.{CACHE_TAG}-x86_64-linux-gnu.so"]
    (wheel_file,) = layer.glob("orjson-*.dist-info/WHEEL")
    tags = re.findall(r"^Tag: (\S+)$", wheel_file.read_text(encoding="utf-8"), re.M)
    assert tags and all(tag.startswith(f"{CP_TAG}-{CP_TAG}-manylinux") for tag in tags), tags
    assert all(tag.endswith("_x86_64") for tag in tags), tags


def test_boto3_and_botocore_import_from_the_layer_alone_at_the_pinned_versions(layer: Path) -> None:
    report = _isolated_python(SDK_CHECK, [layer], layer)
    for package in ("boto3", "botocore"):
        version, origin = report[package]
        assert version == _dev_pin(package), package
        assert origin.startswith(str(layer)), origin
    assert report["put_object_if_none_match"], "S3 conditional create (IfNoneMatch) is missing"


@pytest.mark.parametrize("function", _function_ids())
def test_function_imports_with_only_its_package_the_layer_and_the_standard_library(
    build_dir: Path, layer: Path, function: str
) -> None:
    function_dir = build_dir / function
    assert (function_dir / "app.py").is_file(), f"{function}: app.py missing from the built function"
    report = _isolated_python(IMPORT_CHECK, [function_dir, layer], function_dir)
    assert report["has_handler"], f"{function}: app.lambda_handler is missing"
    assert report["core_from"].startswith(str(layer)), report["core_from"]
    assert report["local_loaded"] == []
    assert report["site_packages"] == []
    assert not report["orjson_loaded"], "orjson is for the merge only: imported at its first use"


def test_layer_build_stops_with_a_clear_message_without_the_runtime_interpreter(tmp_path: Path) -> None:
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    # The Python running the tests is never 3.13 here (3.11), so asking for python3.13 with it fails.
    assert sys.version_info[:2] != (3, 13)
    result = subprocess.run(
        [
            make, "-f", "runtimes/python3.13/Makefile", "build-CoreLayer",
            f"ARTIFACTS_DIR={tmp_path}", f"RUNTIME_PYTHON={sys.executable}",
        ],
        cwd=LAYER_MAKEFILE.parent, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "CoreLayer is built for python3.13" in result.stderr
    assert "Python 3.13" in result.stderr and "RUNTIME_PYTHON" in result.stderr
    assert not (tmp_path / "python").exists(), "nothing is installed for the wrong Python"
