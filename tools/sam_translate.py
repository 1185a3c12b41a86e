"""Print the CloudFormation template SAM makes of template.yaml (what CloudFormation deploys), as JSON.

Runs in .venv-sam (samtranslator comes with the SAM CLI):
`.venv-sam/bin/python tools/sam_translate.py template.yaml > translated.json`. Offline: the template
names no managed policy that needs an IAM lookup, the region (used only for the partition) defaults to
us-east-1, and local code paths become placeholder S3 URIs, as `sam validate` does before translating.
Resource Metadata (e.g. checkov suppressions) is passed through to the resources SAM generates from
it, so a suppression on a function also covers its generated role, permissions and rules.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

_CODE_PROPERTIES = {"AWS::Serverless::Function": "CodeUri", "AWS::Serverless::LayerVersion": "ContentUri"}


class _NoManagedPolicyLookup:
    """The template attaches managed policies by ARN only; there is nothing to look up."""

    def load(self) -> dict[str, str]:
        return {}


def _with_placeholder_code(template: dict[str, Any]) -> dict[str, Any]:
    for resource in template.get("Resources", {}).values():
        key = _CODE_PROPERTIES.get(resource.get("Type"))
        properties = resource.get("Properties") or {}
        if key and isinstance(properties.get(key), str) and not properties[key].startswith("s3://"):
            properties[key] = f"s3://local-code/{properties[key].strip('/')}"
    return template


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: sam_translate.py TEMPLATE", file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as handle:
        template: dict[str, Any] = _with_placeholder_code(yaml_parse(handle.read()))
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    translated = transform(template, {}, _NoManagedPolicyLookup(), passthrough_metadata=True)  # type: ignore[arg-type]
    json.dump(translated, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
