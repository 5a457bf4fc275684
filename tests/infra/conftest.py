"""Helpers for the infrastructure tests: the SAM template parsed and transformed offline, intrinsic
functions resolved with fixed pseudo parameters, a small IAM evaluator, and an S3/Glue call recorder.

No AWS call is made: aws-sam-translator runs with a stub managed-policy loader, and the recorder wraps
botocore's ``BaseClient._make_api_call`` around calls that go to moto.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import ROOT

TEMPLATE = ROOT / "template.yaml"
STATEMACHINE = ROOT / "infra" / "statemachine" / "retrain.asl.json"

# Pseudo parameters used to resolve the template (a lower-case stack name, as the bucket name needs).
PSEUDO = {
    "AWS::StackName": "rentlake-test",
    "AWS::AccountId": "123456789012",
    "AWS::Region": "eu-west-3",
    "AWS::Partition": "aws",
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::NoValue": None,
}
# The lake bucket as the template names it under PSEUDO (tests.support.BUCKET is the moto test bucket).
BUCKET = "rentlake-test-lake-123456789012-eu-west-3"

# The functions of the cycle: template logical id -> folder under functions/.
FUNCTIONS = {
    "IngestFunction": "ingest",
    "CleanFunction": "clean",
    "ExploreFunction": "explore",
    "TrainFunction": "train",
    "EvaluateFunction": "evaluate",
    "PredictFunction": "predict",
    "ScoreFunction": "score",
}


# ------------------------------------------------------------------------------------------ parsing
class _CfnLoader(yaml.SafeLoader):
    """YAML loader that turns CloudFormation short forms (!Ref, !Sub...) into their long JSON forms."""


def _construct(tag: str):
    name = "Ref" if tag == "Ref" else f"Fn::{tag}"

    def construct(loader: yaml.Loader, node: yaml.Node) -> dict[str, Any]:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
            if tag == "GetAtt":
                value = value.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return {name: value}

    return construct


for _tag in (
    "Ref",
    "Sub",
    "GetAtt",
    "If",
    "Not",
    "Equals",
    "And",
    "Or",
    "Join",
    "Select",
    "Split",
    "FindInMap",
    "ImportValue",
    "Base64",
    "Condition",
    "GetAZs",
    "Cidr",
):
    _CfnLoader.add_constructor(f"!{_tag}", _construct(_tag))


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    return yaml.load(path.read_text(), Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass


class _StubPolicyLoader:
    """Managed policy name -> ARN without calling IAM (what ``sam validate`` would fetch)."""

    def load(self) -> dict[str, str]:
        names = [
            "AWSLambdaBasicExecutionRole",
            "AWSXrayWriteOnlyAccess",
            "AWSLambdaRole",
            "AWSLambdaVPCAccessExecutionRole",
            "AWSXRayDaemonWriteAccess",
        ]
        return {n: f"arn:aws:iam::aws:policy/service-role/{n}" for n in names}


def packaged(template: dict[str, Any]) -> dict[str, Any]:
    """The template as ``sam build && sam package`` hand it to CloudFormation: local code paths become S3
    URIs, image functions get an ImageUri, and the state machine definition file is inlined."""
    tpl = copy.deepcopy(template)
    for logical, res in tpl["Resources"].items():
        props = res.get("Properties", {})
        if res["Type"] == "AWS::Serverless::Function":
            if props.get("PackageType") == "Image":
                props["ImageUri"] = f"123456789012.dkr.ecr.eu-west-3.amazonaws.com/rentlake:{logical.lower()}"
            else:
                props["CodeUri"] = f"s3://artifacts/{logical}.zip"
        elif res["Type"] == "AWS::Serverless::LayerVersion":
            props["ContentUri"] = f"s3://artifacts/{logical}.zip"
        elif res["Type"] == "AWS::Serverless::StateMachine" and "DefinitionUri" in props:
            props["Definition"] = json.loads((ROOT / props.pop("DefinitionUri")).read_text())
    return tpl


def transform(template: dict[str, Any]) -> dict[str, Any]:
    """Run aws-sam-translator on the packaged template, offline: what ``samtranslator.translator.
    transform.transform`` does, with an explicit region session (no credentials needed, no call made)
    and the stub managed-policy loader."""
    import boto3
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    loader = _StubPolicyLoader()
    translator = Translator(None, Parser(), boto_session=boto3.Session(region_name=PSEUDO["AWS::Region"]))
    return translator.translate(
        packaged(template),
        parameter_values={"AWS::AccountId": PSEUDO["AWS::AccountId"]},
        get_managed_policy_map=loader.load,
    )


# ------------------------------------------------------------------------------------------ resolving
@dataclass
class Resolver:
    """Resolve intrinsic functions with parameter defaults and :data:`PSEUDO` values."""

    template: dict[str, Any]
    overrides: dict[str, Any] = field(default_factory=dict)

    def param(self, name: str) -> Any:
        if name in self.overrides:
            return self.overrides[name]
        if name in PSEUDO:
            return PSEUDO[name]
        spec = self.template.get("Parameters", {}).get(name)
        if spec is not None:
            return spec.get("Default")
        return name  # a resource: its logical id stands for its name/ARN

    def condition(self, name: str) -> bool:
        return bool(self.resolve(self.template.get("Conditions", {})[name]))

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self.param(arg)
            if key == "Fn::Sub":
                text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])

                def sub(m: re.Match[str]) -> str:
                    name = m.group(1)
                    if name in variables:
                        return str(self.resolve(variables[name]))
                    if "." in name:
                        return f"{name}"
                    return str(self.param(name))

                return re.sub(r"\$\{([^}!]+)\}", sub, text)
            if key == "Fn::GetAtt":
                target = arg if isinstance(arg, list) else arg.split(".", 1)
                return f"{target[0]}.{target[1]}"
            if key == "Fn::Join":
                return arg[0].join(str(self.resolve(v)) for v in arg[1])
            if key == "Fn::If":
                return self.resolve(arg[1] if self.condition(arg[0]) else arg[2])
            if key == "Fn::Equals":
                a, b = (self.resolve(v) for v in arg)
                return str(a) == str(b)
            if key == "Fn::Not":
                return not self.resolve(arg[0])
            if key == "Condition":
                return self.condition(arg)
        out = {k: self.resolve(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v is not None}


# ------------------------------------------------------------------------------------------ IAM
def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@dataclass
class Policy:
    """The resolved identity-policy statements of one role."""

    statements: list[dict[str, Any]]

    def _matches(self, st: dict[str, Any], action: str, resource: str, context: dict[str, str]) -> bool:
        if not any(fnmatch.fnmatchcase(action.lower(), a.lower()) for a in _as_list(st.get("Action", []))):
            return False
        if not any(fnmatch.fnmatchcase(resource, r) for r in _as_list(st.get("Resource", []))):
            return False
        for op, conds in (st.get("Condition") or {}).items():
            for ckey, allowed in conds.items():
                actual = context.get(ckey)
                if actual is None:
                    return False
                if op == "StringLike" and not any(fnmatch.fnmatchcase(actual, p) for p in _as_list(allowed)):
                    return False
                if op == "StringEquals" and actual not in _as_list(allowed):
                    return False
        return True

    def allows(self, action: str, resource: str, context: dict[str, str] | None = None) -> bool:
        ctx = context or {}
        if any(st["Effect"] == "Deny" and self._matches(st, action, resource, ctx) for st in self.statements):
            return False
        return any(
            st["Effect"] == "Allow" and self._matches(st, action, resource, ctx) for st in self.statements
        )

    def can_get(self, key: str) -> bool:
        return self.allows("s3:GetObject", f"arn:aws:s3:::{BUCKET}/{key}")

    def can_put(self, key: str) -> bool:
        return self.allows("s3:PutObject", f"arn:aws:s3:::{BUCKET}/{key}")

    def can_delete(self, key: str) -> bool:
        return self.allows("s3:DeleteObject", f"arn:aws:s3:::{BUCKET}/{key}")

    def can_list(self, prefix: str) -> bool:
        return self.allows("s3:ListBucket", f"arn:aws:s3:::{BUCKET}", {"s3:prefix": prefix})


def role_policy(cfn: dict[str, Any], function_logical_id: str, resolver: Resolver) -> Policy:
    """Every inline statement of a function's (or state machine's) role, resolved."""
    resources = cfn["Resources"]
    props = resources[function_logical_id]["Properties"]
    role_ref = props.get("Role") or props["RoleArn"]
    role_id = role_ref["Fn::GetAtt"][0]
    statements: list[dict[str, Any]] = []
    for pol in resources[role_id]["Properties"].get("Policies", []):
        for st in _as_list(resolver.resolve(pol["PolicyDocument"])["Statement"]):
            statements.append(st)
    return Policy(statements)


# ------------------------------------------------------------------------------------------ recorder
@dataclass
class Call:
    service: str
    operation: str
    params: dict[str, Any]


class Recorder:
    """Every AWS API call made in process (to moto), with its parameters."""

    def __init__(self) -> None:
        self.calls: list[Call] = []

    def s3_accesses(self, bucket: str) -> list[tuple[str, str]]:
        """(IAM action, key or list prefix) for each S3 call on ``bucket``."""
        out: list[tuple[str, str]] = []
        for c in self.calls:
            if c.service != "s3" or c.params.get("Bucket") != bucket:
                continue
            op, p = c.operation, c.params
            if op in ("GetObject", "HeadObject"):
                out.append(("s3:GetObject", p["Key"]))
            elif op in ("PutObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload"):
                out.append(("s3:PutObject", p["Key"]))
            elif op == "CopyObject":
                src = p["CopySource"]
                src_key = src["Key"] if isinstance(src, dict) else str(src).split("/", 1)[1]
                out.append(("s3:GetObject", src_key))
                out.append(("s3:PutObject", p["Key"]))
            elif op == "DeleteObject":
                out.append(("s3:DeleteObject", p["Key"]))
            elif op == "DeleteObjects":
                out.extend(("s3:DeleteObject", o["Key"]) for o in p["Delete"]["Objects"])
            elif op in ("ListObjectsV2", "ListObjects", "ListObjectVersions"):
                out.append(("s3:ListBucket", p.get("Prefix", "")))
            else:
                out.append((f"s3:{op}", "*"))
        return out

    def glue_actions(self) -> set[str]:
        return {f"glue:{c.operation}" for c in self.calls if c.service == "glue"}


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Iterator[Recorder]:
    """Record every botocore API call of the test (the calls still go to moto)."""
    from botocore.client import BaseClient

    rec = Recorder()
    original = BaseClient._make_api_call

    def recording(self: Any, operation_name: str, api_params: dict[str, Any]) -> Any:
        rec.calls.append(Call(self.meta.service_model.service_name, operation_name, dict(api_params)))
        return original(self, operation_name, api_params)

    monkeypatch.setattr(BaseClient, "_make_api_call", recording)
    yield rec


def check_accesses(policy: Policy, accesses: list[tuple[str, str]]) -> list[str]:
    """The accesses the policy does not allow (empty list: all covered)."""
    refused = []
    for action, key in accesses:
        if action == "s3:ListBucket":
            ok = policy.can_list(key)
        elif key == "*":
            ok = policy.allows(action, f"arn:aws:s3:::{BUCKET}")
        else:
            ok = policy.allows(action, f"arn:aws:s3:::{BUCKET}/{key}")
        if not ok:
            refused.append(f"{action} {key!r}")
    return sorted(set(refused))


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="session")
def sam_template() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="session")
def cfn_template(sam_template: dict[str, Any]) -> dict[str, Any]:
    return transform(sam_template)


@pytest.fixture(scope="session")
def cfn_resolver(cfn_template: dict[str, Any]) -> Resolver:
    return Resolver(cfn_template)


@pytest.fixture(scope="session")
def asl() -> dict[str, Any]:
    return json.loads(STATEMACHINE.read_text())
