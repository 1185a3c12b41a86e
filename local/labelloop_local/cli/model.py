"""`labelloop model ...`: operate the model of a deployed stack with the same code as its functions.

`labelloop model rollback --stack NAME` makes the previous model version active again: it reads the
Promote function's configuration (so the parameter names, project and inference units are exactly
the deployed ones), starts the previous version, waits until it is RUNNING, swaps the active and
previous SSM parameters and stops the version it rolled back from.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from labelloop_local.cli import add_command


def register(subparsers: Any) -> None:
    parser = add_command(subparsers, "model", "operate the model of a deployed stack (rollback)", __doc__)
    actions = parser.add_subparsers(dest="model_command", required=True, metavar="ACTION")
    rollback_parser = add_command(
        actions,
        "rollback",
        "make the previous model version active again",
        "Start the previous model version, switch the active model parameter to it once it is RUNNING, "
        "and stop the version rolled back from (it stays the 'previous' one).",
    )
    target = rollback_parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--stack", help="name of the deployed labelloop stack")
    target.add_argument(
        "--promote-function", help="name of the stack's Promote function (instead of --stack)"
    )
    rollback_parser.add_argument(
        "--timeout", type=float, default=1800.0, help="seconds to wait for the previous version to start"
    )
    rollback_parser.set_defaults(func=_rollback)


def promote_function_name(stack_name: str) -> str:
    import boto3

    resource = boto3.client("cloudformation").describe_stack_resource(
        StackName=stack_name, LogicalResourceId="PromoteFunction"
    )
    return str(resource["StackResourceDetail"]["PhysicalResourceId"])


def deployed_environment(function_name: str) -> dict[str, str]:
    import boto3

    configuration = boto3.client("lambda").get_function_configuration(FunctionName=function_name)
    return dict(configuration.get("Environment", {}).get("Variables", {}))


def _rollback(args: argparse.Namespace) -> int:
    from botocore.exceptions import BotoCoreError, ClientError

    from labelloop_core.config import ConfigError, settings_from_env
    from labelloop_core.errors import LabelloopError
    from labelloop_core.services.promote import PromoteSettings, rollback

    try:
        function_name = args.promote_function or promote_function_name(args.stack)
        settings = settings_from_env(PromoteSettings, deployed_environment(function_name))
        print(
            f"rolling back with the configuration of {function_name}; this waits for the model to start",
            file=sys.stderr,
        )
        result = rollback(settings, timeout_seconds=args.timeout)
    except (BotoCoreError, ClientError, ConfigError, LabelloopError) as error:
        print(f"rollback failed: {error}", file=sys.stderr)
        return 1
    print(f"active model:   {result.active_arn}")
    print(f"previous model: {result.previous_arn or 'none'} (stopped)")
    return 0
