"""The retraining state machine, end to end on a moto lake: a small ASL interpreter walks
infra/statemachine/retrain.asl.json and runs each Task's real handler in process.

Supported: Task (lambda:invoke -> the handler named by the DefinitionSubstitutions ARN, sns:publish ->
recorded), Choice, Pass, Succeed, Fail, Map (Distributed: ItemReader listObjectsV2 on the moto bucket,
ItemSelector, ItemBatcher, children run one after another), Parameters/ResultSelector/ResultPath,
Retry (not needed in process) and Catch, JSONPath ``$.a.b``, ``$$.Map.Item.Value``, ``[*]``, and the
intrinsics States.StringSplit / ArrayGetItem / JsonToString / Format.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.conftest import SAMPLES
from tests.infra.conftest import FUNCTIONS, STATEMACHINE, Recorder, Resolver, check_accesses, load_template
from tests.infra.conftest import recorder as recorder  # noqa: F401 - fixture

ARN = "arn:aws:lambda:eu-west-3:123456789012:function:rentlake-{}"


class TaskFailed(Exception):
    def __init__(self, error: str, cause: str) -> None:
        super().__init__(f"{error}: {cause}")
        self.error, self.cause = error, cause


# ------------------------------------------------------------------------------------------ JSONPath
def get_path(data: Any, path: str, context: dict[str, Any]) -> Any:
    root = context if path.startswith("$$") else data
    rest = path[2:] if path.startswith("$$") else path[1:]
    values = [root]
    many = False
    for part in re.findall(r"\.([A-Za-z0-9_]+)|\[(\*|\d+)\]", rest):
        name, index = part
        nxt = []
        for v in values:
            if name:
                if not isinstance(v, dict) or name not in v:
                    raise TaskFailed("States.Runtime", f"path {path} not found")
                nxt.append(v[name])
            elif index == "*":
                many = True
                nxt.extend(v)
            else:
                nxt.append(v[int(index)])
        values = nxt
    return values if many else values[0]


def set_path(data: Any, path: str | None, value: Any) -> Any:
    if path is None:
        return data
    if path == "$":
        return value
    out = copy.deepcopy(data)
    node = out
    parts = path[2:].split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value
    return out


def _split_args(text: str) -> list[str]:
    args, depth, cur, quoted = [], 0, "", False
    for ch in text:
        if ch == "'" and depth == 0:
            quoted = not quoted
        if ch == "," and depth == 0 and not quoted:
            args.append(cur.strip())
            cur = ""
            continue
        depth += (ch == "(") - (ch == ")") if not quoted else 0
        cur += ch
    return [*args, cur.strip()] if cur.strip() else args


def evaluate(expr: str, data: Any, context: dict[str, Any]) -> Any:
    expr = expr.strip()
    if expr.startswith("'"):
        return expr[1:-1]
    if expr.startswith("$"):
        return get_path(data, expr, context)
    if re.fullmatch(r"-?\d+", expr):
        return int(expr)
    m = re.fullmatch(r"(States\.\w+)\((.*)\)", expr, re.S)
    assert m, f"unsupported expression {expr}"
    fn, args = m.group(1), [evaluate(a, data, context) for a in _split_args(m.group(2))]
    if fn == "States.StringSplit":  # every character of the second argument is a delimiter
        return [p for p in re.split("[" + re.escape(args[1]) + "]", args[0]) if p != ""]
    if fn == "States.ArrayGetItem":
        return args[0][args[1]]
    if fn == "States.JsonToString":
        return json.dumps(args[0], separators=(",", ":"))
    if fn == "States.Format":
        out = args[0]
        for a in args[1:]:
            out = out.replace("{}", str(a), 1)
        return out
    raise AssertionError(f"unsupported intrinsic {fn}")


def render(template: Any, data: Any, context: dict[str, Any]) -> Any:
    """Parameters / ItemSelector / ResultSelector: keys ending in .$ are paths or intrinsics."""
    if isinstance(template, dict):
        out = {}
        for k, v in template.items():
            if k.endswith(".$"):
                out[k[:-2]] = evaluate(v, data, context)
            else:
                out[k] = render(v, data, context)
        return out
    if isinstance(template, list):
        return [render(v, data, context) for v in template]
    return template


# ------------------------------------------------------------------------------------------ rules
def choose(rule: dict[str, Any], data: Any, context: dict[str, Any]) -> bool:
    if "And" in rule:
        return all(choose(r, data, context) for r in rule["And"])
    if "Or" in rule:
        return any(choose(r, data, context) for r in rule["Or"])
    if "Not" in rule:
        return not choose(rule["Not"], data, context)
    try:
        value = get_path(data, rule["Variable"], context)
        present = True
    except TaskFailed:
        value, present = None, False
    if "IsPresent" in rule:
        return present == rule["IsPresent"]
    if not present:
        raise TaskFailed("States.Runtime", f"{rule['Variable']} is not present")
    for op, ref in rule.items():
        if op == "BooleanEquals":
            return isinstance(value, bool) and value == ref
        if op == "NumericGreaterThan":
            return value > ref
        if op == "NumericEquals":
            return value == ref
        if op == "StringEquals":
            return value == ref
    raise AssertionError(f"unsupported rule {rule}")


# ------------------------------------------------------------------------------------------ interpreter
@dataclass
class Execution:
    """One run of the state machine: which states ran, which functions were invoked, what was published."""

    definition: dict[str, Any]
    handlers: dict[str, Any]  # function ARN -> handler
    s3: Any
    context_obj: Any = None
    states: list[str] = field(default_factory=list)
    invoked: list[tuple[str, Any]] = field(default_factory=list)
    published: list[dict[str, Any]] = field(default_factory=list)

    def run(
        self,
        data: Any,
        machine: dict[str, Any] | None = None,
        context: dict[str, Any] | None = None,
        stop_at: str | None = None,
    ) -> Any:
        machine = machine or self.definition
        context = context or {"Execution": {"Input": data}}
        name = machine["StartAt"]
        while True:
            if name == stop_at:
                return data
            state = machine["States"][name]
            self.states.append(name)
            kind = state["Type"]
            if kind == "Succeed":
                return data
            if kind == "Fail":
                raise TaskFailed(state.get("Error", "States.Fail"), state.get("Cause", ""))
            if kind == "Choice":
                name = (
                    next((r["Next"] for r in state["Choices"] if choose(r, data, context)), None)
                    or state["Default"]
                )
                continue
            try:
                if kind == "Pass":
                    result = (
                        render(state["Parameters"], data, context)
                        if "Parameters" in state
                        else state.get("Result", data)
                    )
                elif kind == "Task":
                    result = self.task(state, data, context)
                elif kind == "Map":
                    result = self.map(state, data, context)
                else:
                    raise AssertionError(f"unsupported state type {kind}")
                if "ResultSelector" in state:
                    result = render(state["ResultSelector"], result, context)
                data = set_path(data, state.get("ResultPath", "$"), result)
            except TaskFailed as exc:
                catch = next(
                    (
                        c
                        for c in state.get("Catch", [])
                        if "States.ALL" in c["ErrorEquals"] or exc.error in c["ErrorEquals"]
                    ),
                    None,
                )
                if catch is None:
                    raise
                data = set_path(data, catch.get("ResultPath", "$"), {"Error": exc.error, "Cause": exc.cause})
                name = catch["Next"]
                continue
            if state.get("End"):
                return data
            name = state["Next"]

    def task(self, state: dict[str, Any], data: Any, context: dict[str, Any]) -> Any:
        params = render(state.get("Parameters", {}), data, context)
        if state["Resource"] == "arn:aws:states:::lambda:invoke":
            arn = params["FunctionName"]
            payload = params.get("Payload", {})
            self.invoked.append((arn, payload))
            try:
                # the function receives the JSON it would get from Lambda (a copy, never shared objects)
                answer = self.handlers[arn](json.loads(json.dumps(payload)), self.context_obj)
            except Exception as exc:  # noqa: BLE001 - a failed invocation is States.TaskFailed-like
                raise TaskFailed(type(exc).__name__, str(exc)) from exc
            return {"Payload": json.loads(json.dumps(answer, default=str)), "StatusCode": 200}
        if state["Resource"] == "arn:aws:states:::sns:publish":
            self.published.append(params)
            return {"MessageId": f"m-{len(self.published)}"}
        raise AssertionError(f"unsupported resource {state['Resource']}")

    def map(self, state: dict[str, Any], data: Any, context: dict[str, Any]) -> list[Any]:
        reader = state.get("ItemReader")
        if reader:
            assert reader["Resource"] == "arn:aws:states:::s3:listObjectsV2"
            p = reader["Parameters"]
            items = []
            for page in self.s3.get_paginator("list_objects_v2").paginate(
                Bucket=p["Bucket"], Prefix=p["Prefix"]
            ):
                items.extend(
                    {"Key": o["Key"], "Size": o["Size"], "Etag": o["ETag"]} for o in page.get("Contents", [])
                )
        else:
            items = get_path(data, state.get("ItemsPath", "$"), context)
        selected = []
        for i, item in enumerate(items):
            ctx = {**context, "Map": {"Item": {"Index": i, "Value": item}}}
            selected.append(render(state["ItemSelector"], data, ctx) if "ItemSelector" in state else item)
        batcher = state.get("ItemBatcher")
        if batcher:
            size = batcher["MaxItemsPerBatch"]
            inputs = [{"Items": selected[i : i + size]} for i in range(0, len(selected), size)]
        else:
            inputs = selected
        processor = state.get("ItemProcessor") or state["Iterator"]
        return [self.run(x, processor, context) for x in inputs]


# ------------------------------------------------------------------------------------------ fixtures
def definition() -> tuple[dict[str, Any], dict[str, str]]:
    """The ASL with its placeholders substituted, and function ARN -> folder name."""
    template = load_template()
    subs = template["Resources"]["RetrainStateMachine"]["Properties"]["DefinitionSubstitutions"]
    values, arns = {}, {}
    for key, value in subs.items():
        if key.endswith("FunctionArn"):
            name = FUNCTIONS[value["Fn::GetAtt"][0]]
            values[key] = arns_key = ARN.format(name)
            arns[arns_key] = name
        elif key == "LakeBucket":
            values[key] = "rentlake-test"  # the moto bucket of tests/conftest.py
        else:
            values[key] = Resolver(template).resolve(value)
    text = STATEMACHINE.read_text()
    for key, value in values.items():
        text = text.replace("${" + key + "}", value)
    assert "${" not in text
    return json.loads(text), arns


@pytest.fixture
def machine(function: Any, lake: Any, lambda_context: Any) -> Execution:
    asl, arns = definition()
    modules = {arn: function(name) for arn, name in arns.items()}
    return Execution(asl, {arn: m.handler for arn, m in modules.items()}, lake.s3, lambda_context)


def snapshot(lake: Any) -> tuple[list[tuple[str, str]], Any]:
    listing = []
    for page in lake.s3.get_paginator("list_objects_v2").paginate(Bucket=lake.bucket):
        listing.extend((o["Key"], o["ETag"]) for o in page.get("Contents", []))
    return sorted(listing), lake.get_json_or_none("models/champion.json")


# ------------------------------------------------------------------------------------------ tests
def test_new_landing_data_runs_every_stage_in_order_then_a_rerun_changes_nothing(
    machine: Execution, function: Any, put_landing: Any, lake: Any, lambda_context: Any
) -> None:
    # GIVEN a landed file ingested by the S3-triggered ingest function
    event = put_landing("house_intact.csv", (SAMPLES / "house_intact.csv").read_bytes())
    assert function("ingest").handler(event, lambda_context)["rows"]["ingested"] == 545
    assert lake.get_json_or_none("models/champion.json") is None

    # WHEN the scheduled execution runs
    out = machine.run({"trigger": "schedule"})

    # THEN the stages ran in order and the gate's decision was published
    assert [
        s for s in machine.states if s in ("CleanPending", "Explore", "Train", "Evaluate", "QualityGate")
    ] == ["CleanPending", "Explore", "Train", "Evaluate", "QualityGate"]
    assert [a.rsplit("-", 1)[1] for a, _ in machine.invoked] == ["clean", "explore", "train", "evaluate"]
    assert out["clean"]["batches"] == 1
    champion = lake.get_json_or_none("models/champion.json")
    if out["evaluation"]["promoted"]:
        assert machine.states[-3:] == ["Promoted", "Notify", "Done"]
        assert champion is not None and champion["version"] == out["train"]["result"]["version"]
    else:
        assert machine.states[-3:] == ["ChampionKept", "Notify", "Done"] and champion is None
    assert len(machine.published) == 1 and machine.published[0]["Subject"] == out["notification"]["subject"]

    # WHEN it runs again with no new data
    before = snapshot(lake)
    machine.states.clear(), machine.invoked.clear(), machine.published.clear()
    again = machine.run({"trigger": "schedule"})
    # THEN only the clean step ran, the lake and the champion pointer are unchanged
    assert again["clean"]["batches"] == 0
    assert machine.states == ["Mode", "CleanPending", "AnythingNew", "NothingNew", "Notify", "Done"]
    assert snapshot(lake) == before


def test_each_batch_stage_stays_within_its_own_role(
    machine: Execution, function: Any, put_landing: Any, lake: Any, lambda_context: Any, recorder: Recorder
) -> None:
    from tests.infra.conftest import role_policy, transform

    event = put_landing("house_intact.csv", (SAMPLES / "house_intact.csv").read_bytes())
    function("ingest").handler(event, lambda_context)
    cfn = transform(load_template())
    r = Resolver(cfn)
    by_name = {name: logical for logical, name in FUNCTIONS.items()}
    handlers = dict(machine.handlers)
    for arn, handler in handlers.items():
        name = arn.rsplit("-", 1)[1]

        def recorded(event: Any, ctx: Any, _h: Any = handler, _n: str = name) -> Any:
            recorder.calls.clear()
            answer = _h(event, ctx)
            refused = check_accesses(role_policy(cfn, by_name[_n], r), recorder.s3_accesses(lake.bucket))
            assert not refused, f"{_n} touched keys its role does not allow: {refused}"
            return answer

        machine.handlers[arn] = recorded
    machine.run({"trigger": "manual"})
    assert [a.rsplit("-", 1)[1] for a, _ in machine.invoked] == ["clean", "explore", "train", "evaluate"]


def test_backfill_cleans_every_pending_batch_through_the_distributed_map(
    machine: Execution, function: Any, put_landing: Any, lake: Any, lambda_context: Any
) -> None:
    # GIVEN two landed files, ingested: two pending batches (plus a rejected object in the ledger)
    data = (SAMPLES / "house_intact.csv").read_bytes()
    lines = data.splitlines(keepends=True)
    half = len(lines) // 2
    ids = []
    for name, body in (
        ("a.csv", b"".join(lines[:half])),
        ("b.csv", lines[0] + b"".join(lines[half:])),
        ("junk.csv", b"x,y\n1,2\n"),
    ):
        out = function("ingest").handler(put_landing(name, body), lambda_context)["outcomes"][0]
        ids.append(out["ingestion_id"])
    # WHEN a backfill execution cleans them, in batches of ids, stopping before the model stages
    machine.definition["States"]["BackfillClean"]["ItemBatcher"]["MaxItemsPerBatch"] = 2
    out = machine.run({"backfill": True}, stop_at="Explore")
    # THEN one clean invocation per batch of ingestion ids, named by the ledger keys
    payloads = [p for a, p in machine.invoked]
    assert sorted(i for p in payloads for i in p["ingestion_ids"]) == sorted(ids)
    assert [len(p["ingestion_ids"]) for p in payloads] == [2, 1]
    assert sum(r["batches"] for r in out["backfill_clean"]) == 2  # the rejected id is not a batch
    assert len(lake.list_keys("clean/_batches/listings/")) == 2
    # AND a second backfill finds nothing left to clean
    machine.invoked.clear()
    again = machine.run({"backfill": True}, stop_at="Explore")
    assert sum(r["batches"] for r in again["backfill_clean"]) == 0


def test_a_failing_stage_notifies_and_fails(machine: Execution) -> None:
    # no bucket content: make train fail to prove the Catch path, whatever the handler would answer
    def boom(event: Any, ctx: Any) -> Any:
        raise RuntimeError("disk full")

    arn = next(a for a in machine.handlers if a.endswith("-clean"))
    machine.handlers[arn] = boom
    with pytest.raises(TaskFailed) as err:
        machine.run({"trigger": "schedule"})
    assert err.value.error == "RetrainFailed"
    assert machine.states[-2:] == ["NotifyFailure", "Failed"]
    assert "disk full" in machine.published[-1]["Message"]
