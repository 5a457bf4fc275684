"""template.yaml, offline: it transforms to CloudFormation, lints clean, defines every function of the
cycle with a handler that exists, sets every environment variable the code reads, secures the lake and
wires the API, the schedule and the S3 notifications without a dependency cycle."""

from __future__ import annotations

import importlib.metadata
import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.infra.conftest import FUNCTIONS, ROOT, Resolver

RUNTIME = "python3.13"
EVENTS = ROOT / "infra" / "events"


def functions(cfn: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in cfn["Resources"].items() if v["Type"] == "AWS::Lambda::Function"}


# ------------------------------------------------------------------------------------ transform + lint
def test_sam_translator_turns_the_template_into_plain_cloudformation(cfn_template: dict[str, Any]) -> None:
    types = {r["Type"] for r in cfn_template["Resources"].values()}
    assert not {t for t in types if t.startswith("AWS::Serverless::")}
    assert set(functions(cfn_template)) == set(FUNCTIONS)
    for expected in (
        "AWS::S3::Bucket",
        "AWS::S3::BucketPolicy",
        "AWS::Glue::Database",
        "AWS::ApiGatewayV2::Api",
        "AWS::ApiGatewayV2::Stage",
        "AWS::StepFunctions::StateMachine",
        "AWS::Events::Rule",
        "AWS::SNS::Topic",
        "AWS::Lambda::LayerVersion",
        "AWS::Athena::WorkGroup",
    ):
        assert expected in types, expected


def test_cfn_lint_reports_no_error() -> None:
    from cfnlint.api import lint_file

    matches = lint_file(ROOT / "template.yaml")
    errors = [m for m in matches if m.rule.id.startswith("E")]
    warnings = [f"{m.rule.id} line {m.linenumber}: {m.message}" for m in matches if m.rule.id.startswith("W")]
    print("cfn-lint warnings:", warnings or "none")
    assert not errors, "\n".join(f"{m.rule.id} line {m.linenumber}: {m.message}" for m in errors)


# ------------------------------------------------------------------------------------ functions
def test_every_function_of_the_cycle_runs_python313_on_arm64(
    sam_template: dict[str, Any], cfn_template: dict[str, Any]
) -> None:
    for logical, fn in functions(cfn_template).items():
        props = fn["Properties"]
        assert props["Architectures"] == ["arm64"], logical
        if props.get("PackageType") == "Image":
            assert "Runtime" not in props  # the image's base (python:3.13) is the runtime
            meta = sam_template["Resources"][logical]["Metadata"]
            dockerfile = ROOT / meta["DockerContext"] / meta["Dockerfile"]
            assert dockerfile.is_file()
            assert "FROM public.ecr.aws/lambda/python:3.13" in dockerfile.read_text()
        else:
            assert props["Runtime"] == RUNTIME, logical
    # only the prediction path is light enough for a zip (< 250 MB with its layer)
    zips = {
        k
        for k, f in sam_template["Resources"].items()
        if f["Type"] == "AWS::Serverless::Function" and f["Properties"].get("PackageType") != "Image"
    }
    assert zips == {"PredictFunction"}


def handler_paths(sam_template: dict[str, Any]) -> dict[str, tuple[Path, str]]:
    """Function folder name -> (file the handler lives in, attribute), from Handler or ImageConfig.Command."""
    out = {}
    for logical, name in FUNCTIONS.items():
        props = sam_template["Resources"][logical]["Properties"]
        if props.get("PackageType") == "Image":
            dotted = props["ImageConfig"]["Command"][0]  # functions.<name>.app.handler, from LAMBDA_TASK_ROOT
            module, attr = dotted.rsplit(".", 1)
            path = ROOT / (module.replace(".", "/") + ".py")
        else:
            module, attr = props["Handler"].rsplit(".", 1)
            path = ROOT / props["CodeUri"] / (module.replace(".", "/") + ".py")
        out[name] = (path, attr)
    return out


@pytest.mark.parametrize("name", sorted(FUNCTIONS.values()))
def test_every_handler_and_image_command_resolves_to_a_callable(
    name: str, sam_template: dict[str, Any], function: Any
) -> None:
    path, attr = handler_paths(sam_template)[name]
    assert path.parent.name == name and path.name == "app.py"
    assert path.is_file(), f"{path} does not exist"
    module = function(name)  # imports functions/<name>/app.py by path (moto lake + environment set)
    assert module.__file__ == str(path)
    assert callable(getattr(module, attr))


def test_image_copies_the_handlers_where_the_command_looks_for_them() -> None:
    dockerfile = (ROOT / "infra" / "image" / "Dockerfile").read_text()
    assert "COPY functions/ ${LAMBDA_TASK_ROOT}/functions/" in dockerfile
    assert "COPY layers/rentlake/rentlake ${LAMBDA_TASK_ROOT}/rentlake" in dockerfile


# ------------------------------------------------------------------------------------ environment
_ENV_NAME = re.compile(r"[\"']((?:RENTLAKE|POWERTOOLS)_[A-Z0-9_]+)[\"']")
_ENV_READ = re.compile(r"environ(?:\.get\(|\[)\s*[\"']([A-Z0-9_]+)[\"']")
# Set by Lambda itself in every execution environment.
LAMBDA_PROVIDED = {
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_EXECUTION_ENV",
    "LAMBDA_TASK_ROOT",
    "AWS_ENDPOINT_URL",
}
# Read only by the `rentlake` command (cli/), never by a deployed function.
CLI_ONLY = {"RENTLAKE_HOME", "RENTLAKE_FUNCTIONS_DIR", "RENTLAKE_PY313"}
# Optional overrides with a deployed meaning already: RENTLAKE_LAKE (s3://bucket[/prefix] or a folder)
# defaults to s3://$RENTLAKE_BUCKET, which every function has.
OVERRIDES = {"RENTLAKE_LAKE": "RENTLAKE_BUCKET"}
# Powertools' own settings the functions rely on (service name per function, namespace, level).
POWERTOOLS = {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "POWERTOOLS_LOG_LEVEL"}


def variables_read_by_code() -> dict[str, set[str]]:
    """Environment variable -> files reading it, under layers/ and functions/ (the CLI excluded)."""
    found: dict[str, set[str]] = {}
    files = [*(ROOT / "layers").rglob("*.py"), *(ROOT / "functions").rglob("*.py")]
    for path in files:
        rel = path.relative_to(ROOT).as_posix()
        if "/cli/" in rel or ".egg-info" in rel:
            continue
        text = path.read_text()
        for name in {*_ENV_NAME.findall(text), *_ENV_READ.findall(text)}:
            found.setdefault(name, set()).add(rel)
    return found


def test_every_environment_variable_the_code_reads_is_set_for_every_function(
    cfn_template: dict[str, Any],
) -> None:
    read = variables_read_by_code()
    assert {"RENTLAKE_BUCKET", "RENTLAKE_GLUE_DATABASE", "RENTLAKE_MODEL_REFRESH_SECONDS"} <= set(read)
    needed = (set(read) - LAMBDA_PROVIDED - CLI_ONLY) | POWERTOOLS
    for logical, fn in functions(cfn_template).items():
        env = set(fn["Properties"]["Environment"]["Variables"])
        env |= {name for name, fallback in OVERRIDES.items() if fallback in env}
        missing = needed - env
        assert not missing, (
            f"{logical} lacks {sorted(missing)} (read in {[sorted(read.get(m, [])) for m in missing]})"
        )


def test_each_function_names_its_own_powertools_service(cfn_template: dict[str, Any]) -> None:
    for logical, name in FUNCTIONS.items():
        env = cfn_template["Resources"][logical]["Properties"]["Environment"]["Variables"]
        assert env["POWERTOOLS_SERVICE_NAME"] == name


def test_the_bucket_variable_is_the_bucket_the_template_creates(sam_template: dict[str, Any]) -> None:
    r = Resolver(sam_template)
    bucket = r.resolve(sam_template["Resources"]["LakeBucket"]["Properties"]["BucketName"])
    env = r.resolve(sam_template["Globals"]["Function"]["Environment"]["Variables"]["RENTLAKE_BUCKET"])
    assert env == bucket == "rentlake-test-lake-123456789012-eu-west-3"


# ------------------------------------------------------------------------------------ the lake
def test_lake_bucket_is_encrypted_versioned_private_tls_only(cfn_template: dict[str, Any]) -> None:
    res = cfn_template["Resources"]
    props = res["LakeBucket"]["Properties"]
    assert res["LakeBucket"]["DeletionPolicy"] == "Retain"
    sse = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    assert sse["SSEAlgorithm"] in ("AES256", "aws:kms")
    assert props["VersioningConfiguration"]["Status"] == "Enabled"
    assert (
        all(props["PublicAccessBlockConfiguration"].values())
        and len(props["PublicAccessBlockConfiguration"]) == 4
    )
    policy = res["LakeBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    tls = [
        s
        for s in policy
        if s["Effect"] == "Deny"
        and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"
    ]
    assert tls and tls[0]["Principal"] == "*" and len(tls[0]["Resource"]) == 2  # bucket and objects


def test_lifecycle_expires_landing_and_quarantine_and_old_model_versions(
    cfn_template: dict[str, Any],
) -> None:
    r = Resolver(cfn_template)
    rules = {
        x.get("Prefix", ""): x
        for x in r.resolve(
            cfn_template["Resources"]["LakeBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
        )
    }
    assert rules["landing/"]["ExpirationInDays"] == 30
    assert rules["quarantine/"]["ExpirationInDays"] == 90
    assert rules["models/"]["NoncurrentVersionExpiration"]["NoncurrentDays"] == 180
    assert "ExpirationInDays" not in rules["models/"]  # current model versions never expire
    for keep in ("raw/", "clean/", "reports/"):
        assert "ExpirationInDays" not in rules[keep]  # the system of record is never expired
    assert rules[""]["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] >= 1


def test_lake_access_logs_go_to_a_private_encrypted_expiring_logs_bucket(
    cfn_template: dict[str, Any],
) -> None:
    r = Resolver(cfn_template)
    res = cfn_template["Resources"]
    logging = res["LakeBucket"]["Properties"]["LoggingConfiguration"]
    assert logging["DestinationBucketName"] == {"Ref": "LogsBucket"}
    prefix = logging["LogFilePrefix"]
    assert prefix.endswith("/")
    # the grant exists before S3 is asked to log into the bucket
    assert "LogsBucketPolicy" in res["LakeBucket"]["DependsOn"]

    logs = res["LogsBucket"]
    props = r.resolve(logs["Properties"])
    assert logs["DeletionPolicy"] == "Retain"
    sse = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    assert sse["SSEAlgorithm"] == "AES256"  # the logging service cannot write into an SSE-KMS bucket
    pab = props["PublicAccessBlockConfiguration"]
    assert len(pab) == 4 and all(pab.values())
    assert props["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    assert "LoggingConfiguration" not in props  # no log of the log bucket (it would log its own writes)
    (rule,) = props["LifecycleConfiguration"]["Rules"]
    assert rule["Status"] == "Enabled" and rule["ExpirationInDays"] == 90

    # ACLs are disabled, so the logging service is granted by the bucket policy, for the lake only
    policy = r.resolve(res["LogsBucketPolicy"]["Properties"])
    assert policy["Bucket"] == "LogsBucket"
    grants = [
        s
        for s in policy["PolicyDocument"]["Statement"]
        if s["Effect"] == "Allow" and s["Principal"] == {"Service": "logging.s3.amazonaws.com"}
    ]
    assert len(grants) == 1
    (grant,) = grants
    assert grant["Action"] == "s3:PutObject"
    assert grant["Resource"] == f"LogsBucket.Arn/{prefix}*"
    assert (
        grant["Condition"]["ArnLike"]["aws:SourceArn"]
        == "arn:aws:s3:::rentlake-test-lake-123456789012-eu-west-3"
    )
    assert grant["Condition"]["StringEquals"]["aws:SourceAccount"] == "123456789012"
    assert any(
        s["Effect"] == "Deny" and s["Condition"]["Bool"]["aws:SecureTransport"] == "false"
        for s in policy["PolicyDocument"]["Statement"]
    )


def test_glue_database_and_athena_results_prefix(cfn_template: dict[str, Any]) -> None:
    r = Resolver(cfn_template)
    res = cfn_template["Resources"]
    assert r.resolve(res["GlueDatabase"]["Properties"]["DatabaseInput"]["Name"]) == "rentlake"
    loc = r.resolve(
        res["AthenaWorkGroup"]["Properties"]["WorkGroupConfiguration"]["ResultConfiguration"][
            "OutputLocation"
        ]
    )
    assert loc == "s3://rentlake-test-lake-123456789012-eu-west-3/athena-results/"


# ------------------------------------------------------------------------------------ triggers
def s3_notifications(cfn: dict[str, Any]) -> dict[str, str]:
    """Key prefix -> function logical id, from the bucket's notification configuration."""
    conf = cfn["Resources"]["LakeBucket"]["Properties"]["NotificationConfiguration"]["LambdaConfigurations"]
    out = {}
    for c in conf:
        rules = c["Filter"]["S3Key"]["Rules"]
        prefix = next(x["Value"] for x in rules if x["Name"] == "prefix")
        out[prefix] = c["Function"]["Fn::GetAtt"][0]
    return out


def test_uploads_to_landing_trigger_ingest_and_to_score_trigger_score(cfn_template: dict[str, Any]) -> None:
    assert s3_notifications(cfn_template) == {"landing/": "IngestFunction", "score/": "ScoreFunction"}
    # a function never writes under its own trigger prefix (no invocation loop): score writes scored/
    assert not "scored/x.parquet".startswith("score/")


def _refs(value: Any) -> set[str]:
    out: set[str] = set()
    if isinstance(value, dict):
        for k, v in value.items():
            if k == "Ref" and isinstance(v, str):
                out.add(v)
            elif k == "Fn::GetAtt":
                out.add(v[0] if isinstance(v, list) else v.split(".")[0])
            elif k == "Fn::Sub":
                text = v if isinstance(v, str) else v[0]
                out |= {m.split(".")[0] for m in re.findall(r"\$\{([^}!]+)\}", text)}
                if not isinstance(v, str):
                    out |= _refs(v[1])
            else:
                out |= _refs(v)
    elif isinstance(value, list):
        for v in value:
            out |= _refs(v)
    return out


def test_no_circular_dependency_between_the_bucket_and_the_functions(cfn_template: dict[str, Any]) -> None:
    resources = cfn_template["Resources"]
    graph = {}
    for name, res in resources.items():
        deps = _refs(res.get("Properties", {})) | set(
            res.get("DependsOn", [])
            if isinstance(res.get("DependsOn"), list)
            else [res["DependsOn"]]
            if res.get("DependsOn")
            else []
        )
        graph[name] = {d for d in deps if d in resources}
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in graph[node]:
            if state.get(dep) == 1:
                raise AssertionError("cycle: " + " -> ".join([*path, node, dep]))
            if dep not in state:
                visit(dep, [*path, node])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [])
    # and the bucket really depends on the functions' permissions (the edge that makes the cycle possible)
    assert {"IngestFunctionLandedPermission", "ScoreFunctionScoreUploadPermission"} <= set(
        resources["LakeBucket"].get("DependsOn", [])
    )


# ------------------------------------------------------------------------------------ API
def test_http_api_is_throttled_has_cors_and_routes_every_endpoint(cfn_template: dict[str, Any]) -> None:
    r = Resolver(cfn_template)
    res = cfn_template["Resources"]
    stage = next(v for v in res.values() if v["Type"] == "AWS::ApiGatewayV2::Stage")["Properties"]
    route = r.resolve(stage["DefaultRouteSettings"])
    assert route["ThrottlingBurstLimit"] == 100 and route["ThrottlingRateLimit"] == 50
    assert "AccessLogSettings" in stage
    body = res["EstimatesApi"]["Properties"]["Body"]
    cors = body["x-amazon-apigateway-cors"]
    assert "POST" in cors["allowMethods"] and r.resolve(cors["allowOrigins"]) == ["*"]
    routes = {(m.upper(), p) for p, ops in body["paths"].items() for m in ops}
    # Every route the predict app serves has an API Gateway route, and no route leads nowhere.
    from rentlake.runtime.routes import app

    served = {(r.method, r.path) for r in app._static_routes + app._dynamic_routes}
    assert ("POST", "/estimates") in served and ("GET", "/") in served
    assert routes == served


def test_predict_uses_snapstart_on_a_published_alias_or_provisioned_concurrency(
    cfn_template: dict[str, Any],
) -> None:
    res = cfn_template["Resources"]
    default = Resolver(cfn_template)
    assert default.resolve(res["PredictFunction"]["Properties"]["SnapStart"]) == {
        "ApplyOn": "PublishedVersions"
    }
    alias = next(v for v in res.values() if v["Type"] == "AWS::Lambda::Alias")["Properties"]
    assert alias["Name"] == "live"
    assert default.resolve(alias).get("ProvisionedConcurrencyConfig") is None
    provisioned = Resolver(cfn_template, {"PredictProvisionedConcurrency": 2})
    assert provisioned.resolve(res["PredictFunction"]["Properties"]).get("SnapStart") is None
    assert provisioned.resolve(alias)["ProvisionedConcurrencyConfig"] == {
        "ProvisionedConcurrentExecutions": 2
    }
    # the API invokes the alias (published versions), where SnapStart applies
    perms = [
        v["Properties"]
        for k, v in res.items()
        if k.startswith("PredictFunction") and k.endswith("Permission")
    ]
    assert perms and all(p["FunctionName"] == {"Ref": "PredictFunctionAliaslive"} for p in perms)


# ------------------------------------------------------------------------------------ concurrency
def test_ingest_has_reserved_concurrency_so_a_burst_cannot_starve_the_api(
    cfn_template: dict[str, Any], sam_template: dict[str, Any]
) -> None:
    spec = sam_template["Parameters"]["IngestReservedConcurrency"]
    assert spec["Type"] == "Number" and spec["Default"] == 10 and spec["MinValue"] >= 1
    props = cfn_template["Resources"]["IngestFunction"]["Properties"]
    assert props["ReservedConcurrentExecutions"] == {"Ref": "IngestReservedConcurrency"}
    assert Resolver(cfn_template).resolve(props["ReservedConcurrentExecutions"]) == 10
    # throttled S3 events are retried by Lambda, then land in the dead-letter queue: none is lost
    invoke = next(
        v
        for v in cfn_template["Resources"].values()
        if v["Type"] == "AWS::Lambda::EventInvokeConfig"
        and v["Properties"]["FunctionName"] == {"Ref": "IngestFunction"}
    )
    assert invoke["Properties"]["MaximumEventAgeInSeconds"] >= 3600
    assert props["DeadLetterConfig"]["TargetArn"] == {"Fn::GetAtt": ["FailedEventsQueue", "Arn"]}
    # the API's function is never the one reserved down
    assert "ReservedConcurrentExecutions" not in cfn_template["Resources"]["PredictFunction"]["Properties"]


# ------------------------------------------------------------------------------------ alarms
def alarms(cfn: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: v["Properties"] for k, v in cfn["Resources"].items() if v["Type"] == "AWS::CloudWatch::Alarm"}


def test_every_alarm_notifies_the_topic(cfn_template: dict[str, Any]) -> None:
    found = alarms(cfn_template)
    assert {"RetrainFailedAlarm", "FailedEventsAlarm", "ApiErrorsAlarm"} <= set(found)
    for name, props in found.items():
        assert props["AlarmActions"] == [{"Ref": "NotificationsTopic"}], name


def test_the_topic_key_lets_cloudwatch_alarms_publish(cfn_template: dict[str, Any]) -> None:
    r = Resolver(cfn_template)
    res = cfn_template["Resources"]
    key_ref = res["NotificationsTopic"]["Properties"]["KmsMasterKeyId"]
    # alias/aws/sns (the AWS-managed key) cannot be used by CloudWatch: alarms would fire but never notify
    assert isinstance(key_ref, dict) and "Ref" in key_ref, key_ref
    key = res[key_ref["Ref"]]
    assert key["Type"] == "AWS::KMS::Key"
    props = r.resolve(key["Properties"])
    assert props["EnableKeyRotation"] is True
    statements = props["KeyPolicy"]["Statement"]

    def granted(principal: dict[str, str]) -> set[str]:
        return {
            a
            for s in statements
            if s["Effect"] == "Allow" and s["Principal"] == principal
            for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])
        }

    assert {"kms:Decrypt", "kms:GenerateDataKey*"} <= granted({"Service": "cloudwatch.amazonaws.com"})
    assert granted({"AWS": "arn:aws:iam::123456789012:root"}) == {"kms:*"}  # the account administers it
    assert not [s for s in statements if s["Effect"] == "Allow" and s["Principal"] in ("*", {"AWS": "*"})]

    # and the topic policy lets the alarms of this account publish
    (policy,) = [r.resolve(v["Properties"]) for v in res.values() if v["Type"] == "AWS::SNS::TopicPolicy"]
    assert policy["Topics"] == ["NotificationsTopic"]
    (grant,) = [
        s
        for s in policy["PolicyDocument"]["Statement"]
        if s["Effect"] == "Allow" and s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    ]
    assert grant["Action"] == "sns:Publish" and grant["Resource"] == "NotificationsTopic"
    assert grant["Condition"]["StringEquals"]["aws:SourceAccount"] == "123456789012"
    assert grant["Condition"]["ArnLike"]["aws:SourceArn"].startswith(
        "arn:aws:cloudwatch:eu-west-3:123456789012:alarm:"
    )


# ------------------------------------------------------------------------------------ schedule, logs
def test_retraining_is_scheduled_weekly_by_default(
    cfn_template: dict[str, Any], sam_template: dict[str, Any]
) -> None:
    assert sam_template["Parameters"]["RetrainSchedule"]["Default"] == "rate(7 days)"
    rule = next(v for v in cfn_template["Resources"].values() if v["Type"] == "AWS::Events::Rule")[
        "Properties"
    ]
    assert rule["ScheduleExpression"] == {"Ref": "RetrainSchedule"}
    assert rule["Targets"][0]["Arn"] == {"Ref": "RetrainStateMachine"}
    assert json.loads(rule["Targets"][0]["Input"]) == {"trigger": "schedule"}


def test_every_function_logs_to_its_own_group_with_a_retention(cfn_template: dict[str, Any]) -> None:
    res = cfn_template["Resources"]
    for logical in FUNCTIONS:
        group = res[logical]["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
        assert res[group]["Type"] == "AWS::Logs::LogGroup"
        assert res[group]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_parameters_and_outputs(sam_template: dict[str, Any]) -> None:
    assert {
        "Stage",
        "RetrainSchedule",
        "LogRetentionDays",
        "ModelRefreshSeconds",
        "QuarantineExpirationDays",
        "ApiThrottleBurstLimit",
        "ApiThrottleRateLimit",
        "AlarmEmail",
        "PredictProvisionedConcurrency",
    } <= set(sam_template["Parameters"])
    assert {"ApiUrl", "LakeBucket", "RetrainStateMachineArn", "GlueDatabase", "NotificationsTopicArn"} <= set(
        sam_template["Outputs"]
    )


# ------------------------------------------------------------------------------------ events, deps
def test_every_function_has_a_sample_event_and_every_event_file_is_json() -> None:
    files = sorted(EVENTS.glob("*.json"))
    for path in files:
        json.loads(path.read_text())
    names = {p.stem for p in files}
    for fn in FUNCTIONS.values():
        assert any(n == fn or n.startswith(fn + "_") for n in names), f"no infra/events/{fn}*.json"
    assert "retrain_input" in names
    env_local = json.loads((ROOT / "infra" / "env.local.json").read_text())
    assert set(env_local) >= set(FUNCTIONS)


def test_image_requirements_pin_what_the_dev_venv_runs() -> None:
    pins = {}
    for line in (ROOT / "infra" / "image" / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.lower()] = version
    assert {
        "pandas",
        "numpy",
        "pyarrow",
        "awswrangler",
        "scikit-learn",
        "scipy",
        "statsmodels",
        "matplotlib",
        "onnx",
        "onnxruntime",
        "skl2onnx",
        "aws-lambda-powertools",
        "pydantic",
    } == set(pins)
    for name, version in pins.items():
        assert importlib.metadata.version(name) == version, name
    # the predict function pins the same numpy/onnxruntime: the served model runs on what was tested
    predict = dict(
        line.split("==")
        for line in (ROOT / "functions" / "predict" / "requirements.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    for name in ("numpy", "onnxruntime"):
        assert predict[name] == pins[name]


def test_layer_is_pure_python() -> None:
    reqs = [
        line
        for line in (ROOT / "layers" / "rentlake" / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert reqs == []
    compiled = [
        p for p in (ROOT / "layers" / "rentlake" / "rentlake").rglob("*") if p.suffix in (".so", ".pyd")
    ]
    assert compiled == []
