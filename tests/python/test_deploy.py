"""deploy/'s Kubernetes manifests, checked without a cluster by
deploy/check.py against the Kubernetes client's models; and the checker
itself, on manifests that are wrong in each way it looks for."""

import copy
import glob
import importlib.util
import os

import yaml

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
spec = importlib.util.spec_from_file_location("check", os.path.join(ROOT, "deploy", "check.py"))
check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check)
MANIFESTS = sorted(glob.glob(os.path.join(ROOT, "deploy", "k8s", "*.yaml")))


def docs():
    out = []
    for p in MANIFESTS:
        with open(p) as f:
            out += [d for d in yaml.safe_load_all(f) if d]
    return out


def test_the_manifests_use_only_known_fields():
    assert MANIFESTS
    assert check.main(MANIFESTS) == 0
    kinds = sorted(d["kind"] for d in docs())
    assert kinds == ["Job", "PersistentVolumeClaim", "Service", "StatefulSet"]


def test_the_job_runs_the_shared_mirror_as_the_readme_says():
    job = next(d for d in docs() if d["kind"] == "Job")
    pod = job["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["args"][0] == "mirror" and "--queue" in c["args"]
    assert c["args"][c["args"].index("--worker") + 1] == "$(POD_NAME)"
    env = {e["name"]: e for e in c["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert job["spec"]["parallelism"] > 1 and "completions" not in job["spec"]
    assert pod["restartPolicy"] == "Never"
    rules = job["spec"]["podFailurePolicy"]["rules"]
    assert rules[0]["onExitCodes"]["values"] == [1, 2]
    redis = next(d for d in docs() if d["kind"] == "StatefulSet")
    args = redis["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--appendonly") + 1] == "yes"


def test_the_checker_finds_each_kind_of_mistake():
    job = next(d for d in docs() if d["kind"] == "Job")
    wrong = []
    d = copy.deepcopy(job)
    d["spec"]["parallelizm"] = 8  # a misspelt field
    wrong.append(("parallelizm", d))
    d = copy.deepcopy(job)
    d["spec"]["template"]["spec"]["containers"][0]["volumeMount"] = []  # deep
    wrong.append(("volumeMount", d))
    d = copy.deepcopy(job)
    d["spec"]["parallelism"] = "eight"  # a string for an integer
    wrong.append(("parallelism", d))
    d = copy.deepcopy(job)
    d["spec"]["template"]["spec"]["containers"][0]["args"] = "mirror"  # not a list
    wrong.append(("args", d))
    d = copy.deepcopy(job)
    del d["spec"]["template"]["spec"]["containers"][0]["name"]  # required
    wrong.append(("name", d))
    d = copy.deepcopy(job)
    d["apiVersion"] = "batch/v2"  # unknown kind
    wrong.append(("batch/v2", d))
    for what, doc in wrong:
        errors = check.check_doc(doc, "t")
        assert errors, what
        assert any(what in e for e in errors), (what, errors)
