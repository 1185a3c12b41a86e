"""`labelloop reviewers add|list|remove --stack NAME`: the reviewers of a stack's built-in review backend.

Reviewers are users of the stack's Cognito user pool (`ReviewerUserPool`, found through CloudFormation's
`DescribeStackResource`), which only administrators may add (`AllowAdminCreateUserOnly`):

- `add EMAIL` invites one: Cognito's `AdminCreateUser` e-mails a temporary password (the user name is
  the address), and the first sign-in at the portal asks for a password of their own
  (`NEW_PASSWORD_REQUIRED`). Adding an address that is already a reviewer changes nothing.
- `list` shows every reviewer with their status (`FORCE_CHANGE_PASSWORD` until the first sign-in);
- `remove EMAIL` deletes one (`AdminDeleteUser`): their tokens stop working when they expire
  (at most the portal client's token validity, 60 minutes), their answers stay.

The same code runs on the local stack: `labelloop local reviewers ...` (moto sends no e-mail, so there
the temporary password is printed).

Permissions: `cloudformation:DescribeStackResource` on the stack, `cognito-idp:AdminCreateUser`,
`cognito-idp:ListUsers` and `cognito-idp:AdminDeleteUser` on the pool: the `ReviewerAdminPolicyArn`
output is a managed policy with exactly these.
"""

from __future__ import annotations

import argparse
import json
import secrets
import string
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from labelloop_local.cli import add_command

POOL_LOGICAL_ID = "ReviewerUserPool"


class ReviewersError(Exception):
    """The command cannot go on; the message names the cause."""


@dataclass(frozen=True)
class Reviewer:
    email: str
    status: str
    enabled: bool
    created: str
    sub: str | None = None


def temporary_password(length: int = 16) -> str:
    """A random password the pool's policy accepts (upper and lower case letters, digits, symbols)."""
    groups = [string.ascii_uppercase, string.ascii_lowercase, string.digits, "!#%+-=?@^_"]
    chosen = [secrets.choice(group) for group in groups]
    chosen += [secrets.choice("".join(groups)) for _ in range(length - len(chosen))]
    secrets.SystemRandom().shuffle(chosen)
    return "".join(chosen)


class Reviewers:
    """The reviewers of one user pool."""

    def __init__(self, cognito: Any, pool_id: str) -> None:
        self.cognito = cognito
        self.pool_id = pool_id

    @classmethod
    def of_stack(cls, stack: str) -> Reviewers:
        import boto3
        from botocore.exceptions import ClientError

        try:
            resource = boto3.client("cloudformation").describe_stack_resource(
                StackName=stack, LogicalResourceId=POOL_LOGICAL_ID
            )
        except ClientError as error:
            raise ReviewersError(
                f"stack {stack} has no reviewer user pool ({_message(error)}): is its ReviewBackend builtin?"
            ) from None
        return cls(boto3.client("cognito-idp"), str(resource["StackResourceDetail"]["PhysicalResourceId"]))

    def add(self, email: str, password: str | None = None) -> tuple[Reviewer, bool]:
        """Invite `email`; (the reviewer, False when they were already one)."""
        request: dict[str, Any] = {
            "UserPoolId": self.pool_id,
            "Username": email,
            "UserAttributes": [
                {"Name": "email", "Value": email},
                {"Name": "email_verified", "Value": "true"},
            ],
            "DesiredDeliveryMediums": ["EMAIL"],
        }
        if password is not None:
            request["TemporaryPassword"] = password
        try:
            user = self.cognito.admin_create_user(**request)["User"]
        except self.cognito.exceptions.UsernameExistsException:
            existing = next((r for r in self.list() if r.email == email), None)
            if existing is None:
                raise ReviewersError(f"{email} exists in the pool but cannot be listed") from None
            return existing, False
        return _reviewer(user), True

    def list(self) -> list[Reviewer]:
        found: list[Reviewer] = []
        request: dict[str, Any] = {"UserPoolId": self.pool_id}
        while True:
            page = self.cognito.list_users(**request)
            found.extend(_reviewer(user) for user in page.get("Users", []))
            if not page.get("PaginationToken"):
                return sorted(found, key=lambda reviewer: reviewer.email)
            request["PaginationToken"] = page["PaginationToken"]

    def remove(self, email: str) -> None:
        try:
            self.cognito.admin_delete_user(UserPoolId=self.pool_id, Username=email)
        except self.cognito.exceptions.UserNotFoundException:
            raise ReviewersError(f"{email} is not a reviewer of this stack") from None


def _reviewer(user: dict[str, Any]) -> Reviewer:
    attributes = {item["Name"]: item["Value"] for item in user.get("Attributes", [])}
    return Reviewer(
        email=attributes.get("email", str(user.get("Username"))),
        status=str(user.get("UserStatus", "")),
        enabled=bool(user.get("Enabled", True)),
        created=str(user.get("UserCreateDate", "")),
        sub=attributes.get("sub"),
    )


def _message(error: Any) -> str:
    response = getattr(error, "response", {}) or {}
    return str(response.get("Error", {}).get("Message") or error)


# -- command line -----------------------------------------------------------------------------------


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers,
        "reviewers",
        "invite, list and remove the reviewers of a stack (built-in backend)",
        __doc__,
    )
    add_commands(parser, stack_argument=True)


def add_commands(parser: argparse.ArgumentParser, stack_argument: bool, wrap: Any = None) -> None:
    """`add`, `list` and `remove` under `parser`; `wrap(function)` adapts them (e.g. to the local stack)."""
    actions = parser.add_subparsers(dest="reviewers_command", required=True, metavar="ACTION")
    adding = add_command(actions, "add", "invite a reviewer (Cognito e-mails a temporary password)")
    adding.add_argument("email", help="the reviewer's e-mail address (their user name)")
    adding.add_argument(
        "--temporary-password", help="use this temporary password instead of one Cognito generates"
    )
    listing = add_command(actions, "list", "show every reviewer and their status")
    listing.add_argument("--json", action="store_true", help="one JSON object per reviewer on stdout")
    removing = add_command(actions, "remove", "delete a reviewer (their answers stay)")
    removing.add_argument("email", help="the reviewer's e-mail address")
    for sub in (adding, listing, removing):
        if stack_argument:
            sub.add_argument("--stack", required=True, help="name of the deployed labelloop stack")
    for sub, command in ((adding, _add), (listing, _list), (removing, _remove)):
        function = _guarded(command)
        sub.set_defaults(func=wrap(function) if wrap else function)


def _guarded(command: Callable[[argparse.Namespace, Reviewers], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        try:
            return command(args, Reviewers.of_stack(args.stack))
        except ReviewersError as error:
            message = str(error)
        except NoCredentialsError:
            message = (
                "no AWS credentials (configure a profile, or apply the export lines of `labelloop local up`)"
            )
        except ClientError as error:
            message = f"stack {args.stack}: {_message(error)}"
        except BotoCoreError as error:
            message = str(error)
        print(f"reviewers {args.reviewers_command} failed: {message}", file=sys.stderr)
        return 1

    return run


def _add(args: argparse.Namespace, reviewers: Reviewers) -> int:
    password = args.temporary_password
    reviewer, created = reviewers.add(args.email, password)
    if not created:
        print(f"{reviewer.email} is already a reviewer ({reviewer.status}); nothing changed")
        return 0
    print(f"invited {reviewer.email} ({reviewer.status})")
    if getattr(args, "show_password", False) and password:
        print(
            f"temporary password: {password}  (no e-mail is sent here; the first sign-in asks for a new one)"
        )
    else:
        print("Cognito e-mails the temporary password; the first sign-in at the portal asks for a new one")
    return 0


def _list(args: argparse.Namespace, reviewers: Reviewers) -> int:
    found = reviewers.list()
    if args.json:
        for reviewer in found:
            print(json.dumps(asdict(reviewer)))
        return 0
    for reviewer in found:
        state = "" if reviewer.enabled else "  (disabled)"
        print(f"{reviewer.email:40} {reviewer.status}{state}")
    print(f"{len(found)} reviewer(s)", file=sys.stderr)
    return 0


def _remove(args: argparse.Namespace, reviewers: Reviewers) -> int:
    reviewers.remove(args.email)
    print(f"removed {args.email}")
    return 0
