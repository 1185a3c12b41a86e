"""`sam build` produces deployable artifacts: every function imports with only its own package, the
CoreLayer and what the Lambda Python runtime provides (boto3 and its dependencies)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
BUILD_RUNTIME = "python3.11"  # the Python available here; python3.12 (the default) works the same way
# Shipped by the Lambda Python runtime, so handlers may import them without packaging them.
RUNTIME_PACKAGES = ("boto3", "botocore", "jmespath", "s3transfer", "urllib3", "dateutil", "six")

IMPORT_CHECK = """
import importlib, json, sys
sys.path[:0] = json.loads(sys.argv[1])
module = importlib.import_module("app")
import labelloop_core
print(json.dumps({
    "has_handler": callable(getattr(module, "lambda_handler", None)),
    "core_from": labelloop_core.__file__,
    "local_loaded": sorted(name for name in sys.modules if name.startswith("labelloop_local")),
}))
"""


class _CfnLoader(yaml.SafeLoader):
    """Keeps CloudFormation short tags as opaque values: only resource types are needed here."""


_CfnLoader.add_multi_constructor("!", lambda loader, suffix, node: {suffix: None})


def _function_ids() -> list[str]:
    template = yaml.load((REPO / "template.yaml").read_text(encoding="utf-8"), Loader=_CfnLoader)
    return sorted(lid for lid, r in template["Resources"].items() if r["Type"] == "AWS::Serverless::Function")


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
def lambda_runtime_packages(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with only the packages the Lambda runtime adds to the standard library."""
    directory = tmp_path_factory.mktemp("runtime")
    for name in RUNTIME_PACKAGES:
        spec = importlib.util.find_spec(name)
        assert spec and spec.origin, f"{name} is missing from the test environment"
        origin = Path(spec.origin)
        source = origin.parent if origin.name == "__init__.py" else origin
        (directory / source.name).symlink_to(source)
    return directory


def test_every_function_and_the_layer_were_built(build_dir: Path) -> None:
    built = {path.name for path in build_dir.iterdir() if path.is_dir()}
    assert set(_function_ids()) | {"CoreLayer"} <= built


def test_layer_ships_real_schema_and_template_files_and_no_boto3(build_dir: Path) -> None:
    site = build_dir / "CoreLayer" / "python"
    schemas = site / "labelloop_core" / "schemas"
    assert not schemas.is_symlink() and schemas.is_dir()
    shipped = sorted(path.name for path in schemas.glob("*.v1.json"))
    assert shipped == sorted(path.name for path in (REPO / "schemas").glob("*.v1.json"))
    assert all(not path.is_symlink() for path in schemas.iterdir())
    json.loads((schemas / "prediction.v1.json").read_text(encoding="utf-8"))
    assert (site / "labelloop_core" / "templates" / "task_ui.liquid.html").is_file()
    for package in ("aws_lambda_powertools", "aws_xray_sdk", "fastjsonschema"):
        assert (site / package).is_dir(), package
    for runtime_package in ("boto3", "botocore"):
        assert not (site / runtime_package).exists(), (
            f"{runtime_package} belongs to the runtime, not the layer"
        )
    assert not list(site.rglob("*.so")), "binary extensions would tie the layer to one Python version"
    assert not (site / "labelloop_local").exists()


@pytest.mark.parametrize("function", _function_ids())
def test_function_imports_with_only_its_package_the_layer_and_the_runtime(
    build_dir: Path, lambda_runtime_packages: Path, function: str
) -> None:
    function_dir = build_dir / function
    assert (function_dir / "app.py").is_file(), f"{function}: app.py missing from the built function"
    layer = build_dir / "CoreLayer" / "python"
    path = [str(function_dir), str(layer), str(lambda_runtime_packages)]
    # -I -S: no site-packages, no PYTHONPATH, no user site: nothing of the dev environment leaks in.
    # No AWS region or credentials either, so an import-time AWS call would fail here.
    env = {"PATH": os.environ.get("PATH", ""), "LAMBDA_TASK_ROOT": str(function_dir)}
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", IMPORT_CHECK, json.dumps(path)],
        cwd=function_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"{function} does not import:\n{result.stderr[-4000:]}"
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["has_handler"], f"{function}: app.lambda_handler is missing"
    assert report["core_from"].startswith(str(layer)), report["core_from"]
    assert report["local_loaded"] == []
