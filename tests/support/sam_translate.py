"""What CloudFormation deploys: template.yaml translated by the SAM translator aws-sam-cli uses (SAM
policy templates expanded, roles, permissions, rules and destinations generated).

One translation for both of its users: the IAM proof (tests/iam/roles.py) and checkov's scan of the
deployed form (`make lint`, which prints it as JSON):

    .venv/bin/python -m tests.support.sam_translate template.yaml > build/template.translated.json

Offline: local code paths become placeholder S3 URIs (what `sam package` puts there), the template
attaches managed policies by ARN only, so there is nothing to look up, and the region only picks the
partition. Resource Metadata (checkov suppressions) is passed through to the resources SAM generates
from a resource, so a suppression on a function also covers its generated role and permissions.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from labelloop_local.stack.template import parse_yaml

_CODE_PROPERTIES = ("CodeUri", "ContentUri")


def translate(
    template_text: str, parameters: Mapping[str, Any] | None = None, region: str = "us-east-1"
) -> dict[str, Any]:
    """The CloudFormation template `sam deploy` would submit for `template_text`."""
    import boto3
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    document = parse_yaml(template_text)
    for resource in document.get("Resources", {}).values():
        properties = resource.get("Properties") or {}
        for key in _CODE_PROPERTIES:
            if isinstance(properties.get(key), str) and not properties[key].startswith("s3://"):
                properties[key] = f"s3://labelloop-artifacts/{properties[key].strip('/')}"
    values = {"AWS::Region": region, **(parameters or {})}
    translator = Translator(None, Parser(), boto_session=boto3.Session(region_name=region))
    return translator.translate(
        document, parameter_values=values, passthrough_metadata=True, get_managed_policy_map=dict
    )


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m tests.support.sam_translate TEMPLATE", file=sys.stderr)
        return 2
    translated = translate(Path(argv[1]).read_text(encoding="utf-8"))
    json.dump(translated, sys.stdout, indent=1, sort_keys=True, default=str)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
