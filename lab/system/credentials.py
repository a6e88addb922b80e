"""Database passwords generated once per installation, never committed, never printed.

The Secret in ``manifests/02-database/secret.yaml`` names the keys the lab generates in its
annotation ``k8s-lab/generated`` and leaves their values empty. :func:`fill` puts the values in
before the YAML is applied (``lab deploy --manifests``, the notebooks' ``nb.apply``): they come
from ``<data dir>/credentials/<namespace>.json`` (mode 0600, its directory 0700), written with
fresh random values the first time and read back ever after. The file lives next to the
database's data directory it unlocks, so deleting the namespace, the release or the cluster
keeps the data readable, and ``lab deploy --helm`` hands the same values to the chart
(:func:`helm_values_file`).
"""
from __future__ import annotations

import json
import os
import secrets
import string
import tempfile
from pathlib import Path
import yaml

from lab import yamldoc
from lab.errors import LabError
from lab.target import Target

ANNOTATION = "k8s-lab/generated"
LENGTH = 32
# Letters and digits only: safe in SQL string literals, shells, URLs and YAML without quoting.
_ALPHABET = string.ascii_letters + string.digits
# The chart's values for each key of the Secret.
HELM_KEYS = {"root-password": "rootPassword", "password": "password", "backup-password": "backupPassword"}


def generate(length: int = LENGTH) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def credentials_file(target: Target) -> Path:
    """Next to the database files they open: in the cluster's own data directory."""
    return target.data_dir / "credentials" / f"{target.namespace}.json"


def _read(path: Path) -> dict[str, str]:
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        raise LabError(f"cannot read the database credentials in {path}: {error}",
                       hint="restore the file from a copy; deleting it makes new passwords that the "
                            "existing database directory does not accept") from None
    if not isinstance(document, dict) or not all(isinstance(v, str) and v for v in document.values()):
        raise LabError(f"{path} is not a JSON object of non-empty strings",
                       hint="restore the file from a copy, or delete it together with the database's data directory")
    return document


def _write(path: Path, values: dict, dump=lambda v, out: json.dump(v, out, indent=2, sort_keys=True)) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # created 0600
    try:
        with os.fdopen(fd, "w") as out:
            dump(values, out)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def existing(target: Target) -> dict[str, str]:
    """The namespace's saved values (none when nothing was generated yet); never creates any."""
    return _read(credentials_file(target))


def passwords(target: Target, keys: list[str] | tuple[str, ...] = tuple(HELM_KEYS)) -> dict[str, str]:
    """The namespace's values for ``keys``: read from its file, generated (and saved) if missing."""
    path = credentials_file(target)
    values = _read(path)
    missing = [k for k in keys if k not in values]
    if missing:
        values.update({k: generate() for k in missing})
        _write(path, values)
    elif path.stat().st_mode & 0o077:
        os.chmod(path, 0o600)  # someone loosened it: only the owner may read passwords
    return {k: values[k] for k in keys}


def generated_keys(doc: dict) -> list[str]:
    value = ((doc.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION, "")
    return [k.strip() for k in value.split(",") if k.strip()]


def fill(text: str, target: Target) -> str:
    """YAML text with the generated keys of its annotated Secrets filled in (for each Secret's
    own namespace). Text without such a Secret comes back unchanged."""
    documents = list(yamldoc.load_all(text))
    targets = [d for d in documents if isinstance(d, dict) and d.get("kind") == "Secret" and generated_keys(d)]
    if not targets:
        return text
    for doc in targets:
        namespace = (doc.get("metadata") or {}).get("namespace") or target.namespace
        keys = generated_keys(doc)
        doc.setdefault("stringData", {}).update(passwords(target.in_namespace(namespace), keys))
    return yaml.safe_dump_all([d for d in documents if d is not None], sort_keys=False)


def helm_values_file(target: Target) -> Path:
    """A values file (mode 0600, next to the credentials) with the namespace's passwords, for
    ``helm upgrade -f``: never on a command line, where ``ps`` would show them."""
    values = passwords(target)
    path = credentials_file(target).with_suffix(".helm-values.yaml")
    _write(path, {"database": {"auth": {HELM_KEYS[k]: v for k, v in values.items()}}}, yaml.safe_dump)
    return path
