"""`labelloop local demo|up|upload|status|replay|dlq|reviewers|datasets`: the local stack, from the
command line (`status`, `reviewers`, `datasets` and `dlq` as the `labelloop` commands of those names).

`up` keeps its work: the stack's AWS state and the local services' state live in a per-user data
directory (`labelloop_local.stack.state`) and are restored at the next `up`, so reviews, labels,
predictions and trained models survive a restart. Every other command finds the running stack through
the per-user state file, from any directory."""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from labelloop_local.cli import add_command
from labelloop_local.stack import state as local_state
from labelloop_local.stack.state import StackError, read_state, write_state

REVIEW_BACKENDS = ("builtin", "a2i")


def register(subparsers: Any) -> None:
    local = add_command(
        subparsers,
        "local",
        "run the whole pipeline on this machine (no AWS account)",
        "The local stack: a moto server, local Custom Labels and A2I services and the review portal, with "
        "the rules, queues and environment variables of template.yaml and the unchanged handlers.",
    )
    commands = local.add_subparsers(dest="local_command", required=True, metavar="COMMAND")

    demo = add_command(
        commands,
        "demo",
        "one unattended run of the whole loop, with a report",
        "Start the local stack, train a first model, upload images, answer the reviews with an announced "
        "simulated reviewer, retrain, promote, and print a summary (and the path of an HTML report).",
    )
    demo.add_argument("--dataset", type=Path, help="directory with a Ground Truth manifest and its images")
    demo.add_argument("--json", action="store_true", help="print one JSON object with the counts on stdout")
    demo.add_argument(
        "--replay", action="store_true", help="replay the archives afterwards and report changes"
    )
    demo.add_argument(
        "--out", type=Path, help="directory for the report and generated data (default: a temp dir)"
    )
    demo.add_argument("--template", type=Path, help="SAM template (default: ./template.yaml)")
    demo.add_argument("--images", type=int, default=40, help="generated sample images without --dataset")
    demo.add_argument("--min-new-labels", type=int, help="override the MinNewLabels parameter")
    demo.add_argument(
        "--review-backend",
        choices=REVIEW_BACKENDS,
        default="builtin",
        help="review backend: the built-in portal and API (Cognito sign-in), or the A2I emulation",
    )
    demo.set_defaults(func=_demo)

    up = add_command(
        commands,
        "up",
        "start the interactive stack and the review portal until Ctrl-C",
        "Provision template.yaml on the local stack and keep it running; prints the portal URL and the "
        "export lines that point any AWS SDK or CLI at it.",
    )
    up.add_argument(
        "--port",
        type=int,
        default=8080,
        help="port of the local AWS services (and the A2I emulation's portal)",
    )
    up.add_argument(
        "--api-port", type=int, default=8081, help="port of the review portal and API (built-in backend)"
    )
    up.add_argument("--moto-port", type=int, default=0, help="port of the moto server (default: any free)")
    up.add_argument(
        "--review-backend",
        choices=REVIEW_BACKENDS,
        help="set the ReviewBackend parameter (default: the template's, builtin)",
    )
    up.add_argument(
        "--data-dir", type=Path, help="where the stack keeps its state (default: the per-user data directory)"
    )
    up.add_argument("--fresh", action="store_true", help="start from an empty stack: forget the saved state")
    up.add_argument(
        "--container-host",
        default="127.0.0.1",
        help="host name the endpoints in the sam local invoke env-vars file use (e.g. host.docker.internal)",
    )
    up.add_argument("--template", type=Path, help="SAM template (default: ./template.yaml)")
    up.add_argument(
        "--parameter",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="template parameter override (repeatable)",
    )
    up.add_argument(
        "--schedule-interval",
        type=float,
        default=60.0,
        help="seconds between firings of every Schedule rule (0 disables the timer)",
    )
    up.set_defaults(func=_up)

    upload = add_command(commands, "upload", "upload images to incoming/ of the running stack")
    upload.add_argument("files", nargs="+", type=Path, help="PNG or JPEG files")
    upload.set_defaults(func=_upload)

    replay = add_command(
        commands,
        "replay",
        "replay archived events on the running stack; report changes",
        "Replay every EventBridge archive of the running stack and report what changed (nothing, when the "
        "handlers are idempotent).",
    )
    replay.add_argument("--since", help="replay events from this ISO 8601 time (default: everything)")
    replay.set_defaults(func=_replay)

    from labelloop_local.cli import dlq

    dead_letters = add_command(
        commands,
        "dlq",
        "`labelloop dlq list|redrive` on the running local stack (its endpoints from the state file)",
        "The same commands as `labelloop dlq`, with the endpoints and stack name of the stack "
        "`labelloop local up` runs.",
    )
    dlq.add_commands(dead_letters, stack_argument=False, wrap=_on_running_stack)

    from labelloop_local.cli import reviewers

    local_reviewers = add_command(
        commands,
        "reviewers",
        "`labelloop reviewers add|list|remove` on the running local stack (moto sends no e-mail: "
        "`add` prints the temporary password)",
    )
    reviewers.add_commands(local_reviewers, stack_argument=False, wrap=_local_reviewers)

    from labelloop_local.cli import status

    state = add_command(
        commands,
        "status",
        "`labelloop status` of the running local stack (its endpoints from the state file)",
        "The model, images waiting, reviews open, labels, trainings and this month's inference-unit hours "
        "and cost of the stack `labelloop local up` runs.",
    )
    status.add_arguments(state, stack_argument=False, wrap=_with_local_stack)

    from labelloop_local.cli import datasets

    training_data = add_command(
        commands,
        "datasets",
        "`labelloop datasets list|diff` on the running local stack (its endpoints from the state file)",
        "The same commands as `labelloop datasets`, with the endpoints and stack name of the stack "
        "`labelloop local up` runs.",
    )
    datasets.add_commands(training_data, stack_argument=False, wrap=_on_running_stack)


# -- demo ---------------------------------------------------------------------------------------------


def _demo(args: argparse.Namespace) -> int:
    from labelloop_local.demo.run import DemoOptions, main, repo_template

    options = DemoOptions(
        dataset=args.dataset,
        out_dir=args.out,
        template=args.template or repo_template(),
        replay=args.replay,
        sample_images=args.images,
        min_new_labels=args.min_new_labels,
        verbose=bool(getattr(args, "verbose", False)),
        review_backend=args.review_backend,
    )
    if args.dataset is not None and not args.dataset.is_dir():
        print(f"--dataset {args.dataset}: not a directory", file=sys.stderr)
        return 1
    return main(options, as_json=args.json)


# -- up -----------------------------------------------------------------------------------------------


def _parameters(pairs: list[str]) -> dict[str, str]:
    params = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise SystemExit(f"--parameter {pair!r}: expected NAME=VALUE")
        params[name] = value
    return params


def _up(args: argparse.Namespace) -> int:
    from labelloop_local.demo.run import repo_template
    from labelloop_local.stack.local_stack import LocalStack

    template = args.template or repo_template()
    params = _parameters(args.parameter)
    if args.review_backend:
        params["ReviewBackend"] = args.review_backend
    data_dir = args.data_dir or local_state.data_dir()
    host = "127.0.0.1"
    lock = local_state.DataDirLock(data_dir)
    try:
        # Before anything touches the data directory: a second `up` must leave the first one's alone.
        local_state.check_ports_free(
            host,
            [
                ("local AWS services", args.port),
                ("review portal and API", args.api_port),
                ("moto server", args.moto_port),
            ],
        )
        lock.acquire()
    except StackError as exc:
        print(f"the local stack did not start: {exc}", file=sys.stderr)
        return 1
    try:
        return _run_stack(args, LocalStack, template, params, data_dir)
    finally:
        lock.release()


def _run_stack(
    args: argparse.Namespace, stack_type: Any, template: Path, params: dict[str, str], data_dir: Path
) -> int:
    if args.fresh:
        for part in ("services", "logs", "moto-state.pickle"):
            path = data_dir / part
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
    print(f"starting the local stack from {template} (state in {data_dir}) ...", file=sys.stderr)
    stack = stack_type(
        template,
        params=params,
        services_port=args.port,
        api_port=args.api_port,
        moto_port=args.moto_port,
        data_dir=data_dir,
        persist=True,
        logs_on_console=bool(getattr(args, "verbose", False)),
    )
    try:
        stack.start()
    except (StackError, OSError) as exc:
        print(f"the local stack did not start: {exc}", file=sys.stderr)
        stack.stop()
        return 1
    control = _ControlServer(stack)
    state_path = write_state(stack.state(control.url))
    env_vars_path = write_env_vars(stack, args.container_host)
    if args.schedule_interval > 0:
        stack.start_schedules(args.schedule_interval)
    assert stack.stack is not None
    restored = "restored from the last run" if stack.restored else "a new, empty stack"
    print(f"local stack:     {stack.stack_name} ({restored}; review backend {stack.review_backend})")
    print(f"review portal:   {stack.portal_url}")
    if stack.review_backend == "builtin":
        print(
            "add a reviewer:  labelloop local reviewers add you@example.com   (prints the temporary password)"
        )
    print(f"image bucket:    s3://{stack.stack.bucket}/incoming/  (uploads there are detected)")
    print("point any AWS SDK or CLI at the local stack with:")
    for name, value in stack.endpoint_env().items():
        print(f"  export {name}={value}")
    print(f"upload images:   labelloop local upload FILES...   (state in {state_path})")
    print(
        f"sam local invoke <Function> -e events/<file>.json --env-vars {env_vars_path} --docker-network host"
    )
    print(f"function logs:   {stack.logs_dir}/<Function>.log")
    schedule = f"every {args.schedule_interval:g}s" if args.schedule_interval > 0 else "never (timer off)"
    print(f"schedules fire:  {schedule}; Ctrl-C stops the stack (its work is kept for the next up)")
    sys.stdout.flush()
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        stopped.wait()
    except KeyboardInterrupt:
        pass
    finally:
        print("stopping the local stack (saving its state)", file=sys.stderr)
        control.close()
        stack.stop()
        state_path.unlink(missing_ok=True)
    return 0


def write_env_vars(stack: Any, container_host: str = "127.0.0.1") -> Path:
    """The `sam local invoke --env-vars` file of the running stack (per-user location)."""
    functions = stack.env_vars()
    if container_host != "127.0.0.1":
        functions = {
            function: {name: value.replace("127.0.0.1", container_host) for name, value in env.items()}
            for function, env in functions.items()
        }
    path = local_state.env_vars_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(functions, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


class _ControlServer:
    """127.0.0.1 endpoint through which `labelloop local replay` asks the running stack to replay."""

    def __init__(self, stack: Any) -> None:
        outer = stack

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                try:
                    since = _parse_since(query.get("since", [None])[0])
                    report = outer.replay(since=since)
                    status, body = 200, report.as_dict()
                except (ValueError, StackError) as exc:
                    status, body = 400, {"error": str(exc)}
                payload = json.dumps(body).encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer((stack.host, 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"http://{stack.host}:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _parse_since(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"--since {text!r} is not an ISO 8601 time such as 2024-05-01T12:00:00Z") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# -- upload / replay / dlq against a running stack ---------------------------------------------------


def _on_running_stack(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Run an AWS operator command against the running local stack: its endpoint settings (as the
    printed `export` lines would set them) and its stack name."""

    def run(args: argparse.Namespace) -> int:
        from labelloop_local.stack.handlers import environment

        state = _running_state()
        if state is None:
            return 1
        args.stack = state["stack_name"]
        profile = ("AWS_PROFILE", "AWS_SESSION_TOKEN")  # the local stack's fake credentials, not a profile's
        with environment(state["env"], remove=profile):
            return command(args)

    return run


def _with_local_stack(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """`labelloop status` of the running local stack, with where that stack runs (its process, review
    backend, portal and data directory)."""

    def run(args: argparse.Namespace) -> int:
        state = _running_state()
        if state is None:
            return 1
        args.local_stack = {
            "pid": state["pid"],
            "review_backend": state.get("review_backend"),
            "portal_url": state["portal_url"],
            "data_dir": state.get("data_dir"),
        }
        return _on_running_stack(command)(args)

    return run


def _running_state() -> dict[str, Any] | None:
    """The state file `labelloop local up` writes, or None once the reason there is none is printed."""
    try:
        return read_state()
    except StackError as exc:
        print(exc, file=sys.stderr)
        return None


def _local_reviewers(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """`labelloop reviewers ...` on the running local stack; moto sends no e-mail, so `add` makes the
    temporary password here and prints it."""
    from labelloop_local.cli.reviewers import temporary_password

    def run(args: argparse.Namespace) -> int:
        if args.reviewers_command == "add" and not args.temporary_password:
            args.temporary_password = temporary_password()
        args.show_password = True
        return _on_running_stack(command)(args)

    return run


def _upload(args: argparse.Namespace) -> int:
    import boto3

    state = _running_state()
    if state is None:
        return 1
    env = state["env"]
    s3 = boto3.session.Session(
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=state["region"],
    ).client("s3", endpoint_url=state["moto_url"])
    failures = 0
    for path in args.files:
        if not path.is_file():
            print(f"{path}: not a file, skipped", file=sys.stderr)
            failures += 1
            continue
        key = f"incoming/{path.name}"
        try:
            s3.upload_file(str(path), state["bucket"], key)
        except Exception as exc:
            print(f"{path}: upload failed: {exc}", file=sys.stderr)
            failures += 1
            continue
        print(f"uploaded {path} → s3://{state['bucket']}/{key}")
    print(f"open {state['portal_url']} to review", file=sys.stderr)
    return 1 if failures else 0


def _replay(args: argparse.Namespace) -> int:
    try:
        state = read_state()
        _parse_since(args.since)
    except (StackError, ValueError) as exc:
        print(exc, file=sys.stderr)
        return 1
    query = f"?since={urllib.parse.quote(args.since)}" if args.since else ""
    request = urllib.request.Request(f"{state['control_url']}/replay{query}", data=b"", method="POST")
    print("replaying archived events through EventBridge ...", file=sys.stderr)
    try:
        with urllib.request.urlopen(request, timeout=900) as response:
            report = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        print(f"replay failed: {exc.read().decode('utf-8', 'replace')}", file=sys.stderr)
        return 1
    except urllib.error.URLError as exc:
        print(
            f"the stack in {local_state.state_file()} does not answer ({exc.reason}); "
            "is `labelloop local up` running?"
        )
        return 1
    print(json.dumps(report, indent=2))
    changed = report["new_reviews"] or report["new_label_lines"] or report["new_trainings"]
    print(
        "nothing changed: the handlers are idempotent" if not changed else "the replay CHANGED state",
        file=sys.stderr,
    )
    return 0
