"""Checks Kubernetes manifests without a cluster (CI has none).

Every YAML document must parse, name a kind this checker knows (its
apiVersion and kind map to the Kubernetes Python client's model), use only
fields that model knows at every depth, with values of the right shape
(objects, lists, maps, strings, integers, booleans), and carry the fields
the API requires (the client's own deserialisation checks those).

    python deploy/check.py deploy/k8s/*.yaml
"""

import re
import sys

import kubernetes.client as k8s
import yaml

KINDS = {
    ("v1", "Service"): "V1Service",
    ("v1", "PersistentVolumeClaim"): "V1PersistentVolumeClaim",
    ("v1", "ConfigMap"): "V1ConfigMap",
    ("v1", "Secret"): "V1Secret",
    ("apps/v1", "StatefulSet"): "V1StatefulSet",
    ("apps/v1", "Deployment"): "V1Deployment",
    ("batch/v1", "Job"): "V1Job",
}

SCALARS = {
    "str": str,
    "int": int,
    "bool": bool,
    "float": (int, float),
    "datetime": str,
    "date": str,
}


def walk(value, typ, path, errors):
    """Checks `value` against the client's type name `typ`."""
    m = re.fullmatch(r"(?i)list\[(.+)\]", typ)
    if m:
        if not isinstance(value, list):
            errors.append(f"{path}: a list expected, got {type(value).__name__}")
            return
        for i, v in enumerate(value):
            walk(v, m.group(1), f"{path}[{i}]", errors)
        return
    m = re.fullmatch(r"(?i)dict\(\s*str\s*,\s*(.+)\)|dict\[\s*str\s*,\s*(.+)\]", typ)
    if m:
        if not isinstance(value, dict):
            errors.append(f"{path}: a map expected, got {type(value).__name__}")
            return
        for key, v in value.items():
            walk(v, m.group(1) or m.group(2), f"{path}.{key}", errors)
        return
    if typ == "object":  # int-or-string, quantities, free-form
        return
    if typ in SCALARS:
        want = SCALARS[typ]
        if isinstance(value, bool) and typ != "bool" or not isinstance(value, want):
            errors.append(f"{path}: a {typ} expected, got {value!r}")
        return
    model = getattr(k8s, typ, None)
    if model is None:
        errors.append(f"{path}: the checker does not know the type {typ}")
        return
    if not isinstance(value, dict):
        errors.append(f"{path}: an object ({typ}) expected, got {value!r}")
        return
    by_json = {j: attr for attr, j in model.attribute_map.items()}
    for key, v in value.items():
        attr = by_json.get(key)
        if attr is None:
            errors.append(f"{path}.{key}: not a field of {typ}")
            continue
        walk(v, model.openapi_types[attr], f"{path}.{key}", errors)


def check_doc(doc, where):
    """The errors of one manifest document."""
    if not isinstance(doc, dict):
        return [f"{where}: not a mapping"]
    key = (doc.get("apiVersion"), doc.get("kind"))
    typ = KINDS.get(key)
    if typ is None:
        return [f"{where}: unknown apiVersion/kind {key}"]
    name = (doc.get("metadata") or {}).get("name", "?")
    errors = []
    walk(doc, typ, f"{where} {key[1]}/{name}", errors)
    if not errors:
        try:
            # Missing required fields (a container's name, a selector, …).
            k8s.ApiClient()._ApiClient__deserialize(doc, typ)
        except (ValueError, TypeError) as e:
            errors.append(f"{where} {key[1]}/{name}: {e}")
    return errors


def check_file(path):
    with open(path) as f:
        try:
            docs = [d for d in yaml.safe_load_all(f) if d is not None]
        except yaml.YAMLError as e:
            return [f"{path}: {e}"], 0
    errors = []
    for i, doc in enumerate(docs):
        errors += check_doc(doc, f"{path}#{i}")
    return errors, len(docs)


def main(paths):
    errors, n = [], 0
    for p in paths:
        e, d = check_file(p)
        errors += e
        n += d
    for e in errors:
        print(e, file=sys.stderr)
    if not errors:
        print(f"{n} manifests ok")
    return 1 if errors or n == 0 else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
