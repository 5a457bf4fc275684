"""Least privilege, proved on the transformed template: every function may touch only the lake prefixes
its code reads or writes, and the code stays inside them.

Two kinds of proof:

* the table :data:`ACCESS` (who reads/writes which zone, from the code) against the resolved IAM
  statements: every listed access is allowed and every other zone is refused;
* the handlers run on moto with every botocore call recorded (``BaseClient._make_api_call``): each S3
  key (and list prefix) they touch, and each Glue action they call, must be allowed by their role. This
  is done for ingest and clean (the S3-triggered and state-machine paths), predict and score here; explore,
  train and evaluate are checked the same way by tests/integration/test_retrain_state_machine.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.infra.conftest import (
    BUCKET,
    FUNCTIONS,
    Policy,
    Recorder,
    Resolver,
    check_accesses,
    role_policy,
)
from tests.support import SAMPLES, FakeContext

# What each function reads and writes (prefixes), derived from the code (rentlake.stages, modeling_jobs,
# registry, scoring, runtime.model) and checked against it by the recorded runs below.
ACCESS: dict[str, dict[str, list[str]]] = {
    "ingest": {
        "read": ["landing/", "raw/_ingestions/"],
        "write": ["raw/objects/", "raw/_ingestions/", "raw/listings/", "quarantine/objects/"],
    },
    "clean": {
        "read": ["raw/_ingestions/", "raw/listings/", "clean/"],
        "write": [
            "clean/listings/",
            "clean/_batches/",
            "clean/_index/",
            "clean/_summaries/",
            "quarantine/listings/",
            "reports/quality/",
        ],
    },
    "explore": {"read": ["clean/", "quarantine/listings/", "reports/"], "write": ["reports/run-1/"]},
    "train": {"read": ["clean/", "models/"], "write": ["models/v-1/"]},
    "evaluate": {"read": ["models/", "clean/"], "write": ["models/champion.json", "models/v-1/"]},
    "predict": {"read": ["models/"], "write": []},
    "score": {"read": ["score/", "models/"], "write": ["scored/"]},
}
# One key per zone (and the pointers) to try writes and reads outside the table.
PROBES = [
    "landing/x.csv",
    "raw/objects/x",
    "raw/_ingestions/x.json",
    "raw/listings/x.parquet",
    "clean/listings/x.parquet",
    "clean/_batches/listings/x.json",
    "quarantine/objects/x",
    "quarantine/listings/x.parquet",
    "reports/quality/listings/x.json",
    "reports/run-1/report.html",
    "models/v-1/model.onnx",
    "models/champion.json",
    "models/champion_history.json",
    "score/x.csv",
    "scored/x.parquet",
    "athena-results/x.csv",
    "elsewhere.txt",
]


def key_in(prefix: str) -> str:
    return prefix if prefix.endswith(".json") else prefix + "x"


@pytest.fixture(scope="module")
def policies(cfn_template: dict[str, Any]) -> dict[str, Policy]:
    r = Resolver(cfn_template)
    return {name: role_policy(cfn_template, logical, r) for logical, name in FUNCTIONS.items()}


# ------------------------------------------------------------------------------------ static checks
def test_no_wildcard_action_and_no_star_resource(policies: dict[str, Policy]) -> None:
    for name, pol in policies.items():
        for st in pol.statements:
            actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
            assert not [a for a in actions if a == "*" or a.endswith(":*")], (name, st)
            resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
            assert "*" not in resources, (name, st)
            for res in resources:
                # S3 object access is always scoped to a prefix of the lake, never the whole bucket
                if res.startswith("arn:aws:s3:::"):
                    assert res == f"arn:aws:s3:::{BUCKET}" or res.startswith(f"arn:aws:s3:::{BUCKET}/"), res
                    assert res != f"arn:aws:s3:::{BUCKET}/*", (name, res)
            if "s3:ListBucket" in actions:
                assert st["Condition"]["StringLike"]["s3:prefix"], (name, st)


def test_state_machine_role_uses_star_only_where_no_resource_level_permission_exists(
    cfn_template: dict[str, Any],
) -> None:
    pol = role_policy(cfn_template, "RetrainStateMachine", Resolver(cfn_template))
    for st in pol.statements:
        actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        if st["Resource"] == "*":
            assert all(a.startswith("logs:") for a in actions), st  # vended log delivery only
        assert not [a for a in actions if a == "*" or a.endswith(":*")]
    for fn in ("CleanFunction", "ExploreFunction", "TrainFunction", "EvaluateFunction"):
        assert pol.allows("lambda:InvokeFunction", f"arn:aws:lambda:eu-west-3:123456789012:function:{fn}")
    assert not pol.allows(
        "lambda:InvokeFunction", "arn:aws:lambda:eu-west-3:123456789012:function:PredictFunction"
    )
    assert pol.allows("s3:ListBucket", f"arn:aws:s3:::{BUCKET}", {"s3:prefix": "raw/_ingestions/"})
    assert not pol.allows("s3:GetObject", f"arn:aws:s3:::{BUCKET}/raw/_ingestions/x.json")


# The role of each function, as intended: object reads, object writes (put/delete), writes refused.
SCOPE: dict[str, dict[str, list[str]]] = {
    "ingest": {"get": ["landing/", "raw/_ingestions/"], "put": ["raw/", "quarantine/objects/"]},
    # quarantine/<dataset>/ only: quarantine/objects/ (objects rejected whole) is ingest's.
    "clean": {"get": ["raw/", "clean/"], "put": ["clean/", "quarantine/listings/", "reports/quality/"]},
    # quarantine/listings/: the course line keeps the duplicates that cleaning quarantines.
    "explore": {"get": ["clean/", "quarantine/listings/", "reports/"], "put": ["reports/"]},
    "train": {
        "get": ["clean/", "models/"],
        "put": ["models/"],
        "never": ["models/champion.json", "models/champion_history.json"],
    },
    "evaluate": {"get": ["models/", "clean/"], "put": ["models/"]},
    "predict": {"get": ["models/"], "put": []},
    "score": {"get": ["score/", "models/"], "put": ["scored/"]},
}


@pytest.mark.parametrize("name", sorted(ACCESS))
def test_the_code_table_fits_in_the_intended_scope(name: str) -> None:
    scope = SCOPE[name]
    for prefix in ACCESS[name]["read"]:
        assert any(prefix.startswith(p) for p in scope["get"] + scope["put"]), (name, prefix)
    for prefix in ACCESS[name]["write"]:
        assert any(prefix.startswith(p) for p in scope["put"]), (name, prefix)


@pytest.mark.parametrize("name", sorted(ACCESS))
def test_each_function_may_touch_its_zones_and_nothing_else(name: str, policies: dict[str, Policy]) -> None:
    pol, access, scope = policies[name], ACCESS[name], SCOPE[name]
    for prefix in access["read"]:
        assert pol.can_get(key_in(prefix)), f"{name} cannot read {prefix}"
        assert pol.can_list(prefix), f"{name} cannot list {prefix}"
    for prefix in access["write"]:
        assert pol.can_put(key_in(prefix)), f"{name} cannot write {prefix}"
    for key in PROBES:
        may_write = any(key.startswith(p) for p in scope["put"]) and key not in scope.get("never", [])
        assert pol.can_put(key) == may_write, f"{name} put {key}: expected {may_write}"
        if not may_write:
            assert not pol.can_delete(key), f"{name} may delete {key}"
        assert pol.can_get(key) == any(key.startswith(p) for p in scope["get"]), f"{name} get {key}"
    assert not pol.can_list(""), f"{name} may list the whole bucket"


def test_clean_may_write_rejected_rows_of_any_dataset_but_never_the_rejected_objects(
    policies: dict[str, Policy],
) -> None:
    clean = policies["clean"]
    for key in ("quarantine/listings/x.parquet", "quarantine/reference_rents/x.parquet"):
        assert clean.can_put(key) and clean.can_delete(key), key
    for key in (
        "quarantine/objects/ingestion_id=i/a.csv",
        "quarantine/objects/ingestion_id=i/a.csv.reason.json",
    ):
        assert not clean.can_put(key) and not clean.can_delete(key), key
    assert policies["ingest"].can_put("quarantine/objects/ingestion_id=i/a.csv")


def test_state_machine_role_lists_its_own_executions_and_uses_the_topic_key(
    cfn_template: dict[str, Any],
) -> None:
    pol = role_policy(cfn_template, "RetrainStateMachine", Resolver(cfn_template))
    own = "arn:aws:states:eu-west-3:123456789012:stateMachine:rentlake-test-retrain"
    assert pol.allows("states:ListExecutions", own)
    assert not pol.allows("states:ListExecutions", own.replace("rentlake-test-retrain", "other"))
    # the ARN is built from the Name: no reference to the state machine itself (no circular dependency)
    sm = cfn_template["Resources"]["RetrainStateMachine"]["Properties"]
    assert Resolver(cfn_template).resolve(sm["StateMachineName"]) == "rentlake-test-retrain"
    # the topic is encrypted with a customer-managed key: publishing needs the key as well as sns:Publish
    for action in ("kms:GenerateDataKey", "kms:Decrypt"):
        assert pol.allows(action, "NotificationsKey.Arn"), action
    assert not pol.allows("kms:Encrypt", "NotificationsKey.Arn")


def test_predict_is_read_only_on_models(policies: dict[str, Policy]) -> None:
    pol = policies["predict"]
    for key in PROBES:
        assert not pol.can_put(key) and not pol.can_delete(key)
        assert pol.can_get(key) == key.startswith("models/")


def test_only_evaluate_may_move_the_champion_pointer(policies: dict[str, Policy]) -> None:
    movers = {n for n, p in policies.items() if p.can_put("models/champion.json")}
    assert movers == {"evaluate"}
    assert policies["train"].can_put("models/v-1/model.onnx")


# ------------------------------------------------------------------------------------ recorded runs
def assert_within(pol: Policy, rec: Recorder, bucket: str, name: str) -> list[tuple[str, str]]:
    accesses = rec.s3_accesses(bucket)
    assert accesses, f"{name}: no S3 call recorded"
    refused = check_accesses(pol, accesses)
    assert not refused, f"{name} touched keys its role does not allow: {refused}"
    return accesses


def test_ingest_and_clean_on_moto_touch_only_what_their_roles_allow(
    policies: dict[str, Policy],
    function: Any,
    put_landing: Any,
    lambda_context: Any,
    bucket: str,
    recorder: Recorder,
) -> None:
    bad = b"not,a,listing\n1,2,3\n"  # rejected whole: exercises the quarantine/objects/ path
    events = [
        put_landing("house_intact.csv", (SAMPLES / "house_intact.csv").read_bytes()),
        put_landing("unknown.csv", bad),
    ]
    ingest = function("ingest")
    recorder.calls.clear()  # the uploads above are the test's, not the function's
    outcomes = [ingest.handler(e, lambda_context)["outcomes"][0]["status"] for e in events]
    assert outcomes == ["ingested", "rejected"]
    ingest.handler(events[0], lambda_context)  # a duplicate: reads the ledger only
    accesses = assert_within(policies["ingest"], recorder, bucket, "ingest")
    written = {k for a, k in accesses if a == "s3:PutObject"}
    assert {k.split("/")[0] + "/" + k.split("/")[1] for k in written} == {
        "raw/objects",
        "raw/_ingestions",
        "raw/listings",
        "quarantine/objects",
    }
    allowed_glue = {
        a
        for st in policies["ingest"].statements
        if st["Effect"] == "Allow"
        for a in st["Action"]
        if a.startswith("glue:")
    }
    assert recorder.glue_actions() and recorder.glue_actions() <= allowed_glue, recorder.glue_actions()

    clean_rec = Recorder()
    recorder.calls.clear()
    result = function("clean").handler({}, lambda_context)
    assert result["batches"] == 1
    clean_rec.calls = list(recorder.calls)
    accesses = assert_within(policies["clean"], clean_rec, bucket, "clean")
    written = {k for a, k in accesses if a == "s3:PutObject"}
    assert any(k.startswith("clean/_batches/") for k in written)
    assert any(k.startswith("reports/quality/") for k in written)
    assert not [k for k in written if k.startswith(("landing/", "raw/", "models/"))]
    allowed_glue = {
        a
        for st in policies["clean"].statements
        if st["Effect"] == "Allow"
        for a in st["Action"]
        if a.startswith("glue:")
    }
    assert clean_rec.glue_actions() <= allowed_glue, clean_rec.glue_actions()


def test_predict_and_score_on_moto_touch_only_what_their_roles_allow(
    policies: dict[str, Policy], function: Any, lake: Any, bucket: str, recorder: Recorder
) -> None:
    import json

    from rentlake.runtime.testing import make_card, make_onnx_model, publish_champion

    from tests.support import load_event

    publish_champion(
        lake, "v1", make_onnx_model(district_factors={"75006": 1.3}), make_card("v1", districts=["75006"])
    )
    lake.put_bytes("score/listings.csv", b"id,surface_m2,district\na,30,75006\nb,45.5,75006\n")
    predict, score = function("predict"), function("score")
    recorder.calls.clear()
    answer = predict.handler(load_event("predict_estimate"), FakeContext())
    assert answer["statusCode"] == 200, answer
    assert json.loads(answer["body"])["model_version"] == "v1"
    model = predict.handler(load_event("predict_model"), FakeContext())
    assert model["statusCode"] == 200, model
    accesses = assert_within(policies["predict"], recorder, bucket, "predict")
    assert {a for a, _ in accesses} <= {"s3:GetObject", "s3:ListBucket"}

    recorder.calls.clear()
    event = json.loads(
        json.dumps(load_event("score_s3_put")).replace("listings_to_score.csv", "listings.csv")
    )
    out = score.handler(event, FakeContext())  # a batch handler reads Lambda's context
    assert "error" not in out["scored"][0], out
    accesses = assert_within(policies["score"], recorder, bucket, "score")
    assert {k.split("/")[0] for a, k in accesses if a == "s3:PutObject"} == {"scored"}
