"""The local stack's AWS state across restarts: a snapshot of moto's backends, restored at the next start.

moto keeps everything in memory, so without this every restart of `labelloop local up` would start
from an empty account (and the local services' own files would point at objects that no longer exist).
The snapshot pickles the backends the stack uses (S3 with every object version, so image identities
and version ids survive; DynamoDB; SQS, dead letters included; EventBridge rules and archives; SSM;
Cognito users). A few moto objects do not pickle as they are: locks are recreated, defaultdicts with a
local factory get an equivalent named one, and Cognito's signing key (a fixed key shipped with moto) is
loaded again. The file is written atomically; it is read only from the stack's own data directory.
"""

from __future__ import annotations

import collections
import io
import logging
import os
import pickle
import tempfile
import threading
from pathlib import Path
from typing import Any

LOG = logging.getLogger(__name__)

SNAPSHOT_FILE = "moto-state.pickle"
SERVICES = ("s3", "dynamodb", "sqs", "events", "ssm", "cognito-idp")
_LOCK_TYPES = {type(threading.RLock()): threading.RLock, type(threading.Lock()): threading.Lock}


def _new_lock(kind: Any) -> Any:
    return kind()


def _dict_of_dicts() -> collections.defaultdict[Any, Any]:
    return collections.defaultdict(dict)


def _rebuild_defaultdict(cls: Any, factory: Any, items: dict[Any, Any], state: dict[str, Any]) -> Any:
    rebuilt = cls.__new__(cls)
    collections.defaultdict.__init__(rebuilt, factory)
    rebuilt.update(items)
    if state:
        rebuilt.__dict__.update(state)
    return rebuilt


def _cognito_signing_key() -> Any:
    from joserfc import jwk
    from moto.cognitoidp.models import load_resource

    return jwk.RSAKey.import_key(load_resource("cognitoidp/resources/jwks-private.json"))


def _portable_factory(factory: Any) -> Any:
    if factory is None or getattr(factory, "__name__", "") != "<lambda>":
        return factory
    made = factory()
    if isinstance(made, collections.defaultdict) and made.default_factory is dict and not made:
        return _dict_of_dicts
    raise TypeError(f"cannot snapshot a defaultdict made by {factory.__qualname__}")


class _Pickler(pickle.Pickler):
    def reducer_override(self, obj: Any) -> Any:
        kind = _LOCK_TYPES.get(type(obj))
        if kind is not None:
            return _new_lock, (kind,)
        if isinstance(obj, collections.defaultdict):
            state = dict(getattr(obj, "__dict__", {}))
            return _rebuild_defaultdict, (type(obj), _portable_factory(obj.default_factory), dict(obj), state)
        from joserfc import jwk

        if isinstance(obj, jwk.RSAKey):
            return _cognito_signing_key, ()
        return NotImplemented


def _register_buckets(s3: Any) -> None:
    """moto's S3 finds a bucket's owner in a registry beside the backends (`bucket_accounts`, filled
    when a bucket object is made, not when one is unpickled): without it, the next CreateBucket of a
    restored bucket (provisioning at every start) would replace it with an empty one."""
    s3.bucket_accounts.clear()
    for account_id, partitions in s3.items():
        for partition, backend in partitions.items():
            for bucket_name in backend.buckets:
                s3.bucket_accounts[bucket_name] = (partition, account_id)


def save(directory: Path) -> Path:
    """Write the snapshot of the backends to `directory` (atomically); the path written."""
    from moto.backends import get_backend

    buffer = io.BytesIO()
    _Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(
        {name: dict(get_backend(name)) for name in SERVICES}  # type: ignore[call-overload]
    )
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / SNAPSHOT_FILE
    descriptor, temporary = tempfile.mkstemp(prefix=SNAPSHOT_FILE, dir=directory)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(buffer.getvalue())
    os.replace(temporary, target)
    return target


def restore(directory: Path) -> bool:
    """Replace the backends by the snapshot in `directory`; False when there is none."""
    from moto.backends import get_backend

    path = directory / SNAPSHOT_FILE
    if not path.is_file():
        return False
    with path.open("rb") as handle:
        snapshot = pickle.load(handle)  # written by save() into the stack's own data directory
    for name, accounts in snapshot.items():
        backend = get_backend(name)
        backend.clear()
        backend.update(accounts)
    _register_buckets(get_backend("s3"))
    LOG.info("restored the local stack's AWS state from %s", path)
    return True
