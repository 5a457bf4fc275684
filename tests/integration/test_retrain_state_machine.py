"""The retraining state machine, end to end on a moto lake: a small ASL interpreter walks
infra/statemachine/retrain.asl.json and runs each Task's real handler in process.

Supported: Task (lambda:invoke -> the handler named by the DefinitionSubstitutions ARN, sns:publish ->
recorded, aws-sdk:sfn:listExecutions -> the executions of a registry shared by the runs of a test),
Choice, Pass, Succeed, Fail, Map (Distributed: ItemReader listObjectsV2 on the moto bucket, ItemSelector,
ItemBatcher, children run in threads, at most MaxConcurrency at a time), Parameters/ResultSelector/
ResultPath, Retry (not needed in process) and Catch, JSONPath ``$.a.b``, ``$$.Map.Item.Value``,
``$$.Execution.Id``, ``[*]``, and the intrinsics States.StringSplit / ArrayGetItem / ArrayLength /
MathAdd / JsonToString / Format.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.infra.conftest import FUNCTIONS, STATEMACHINE, Recorder, Resolver, check_accesses, load_template
from tests.infra.conftest import recorder as recorder  # noqa: F401 - fixture
from tests.support import SAMPLES

ARN = "arn:aws:lambda:eu-west-3:123456789012:function:rentlake-{}"
STATE_MACHINE_ARN = "arn:aws:states:eu-west-3:123456789012:stateMachine:rentlake-test-retrain"
EXECUTION_ARN = "arn:aws:states:eu-west-3:123456789012:execution:rentlake-test-retrain:{}"
T0 = datetime(2026, 1, 5, 3, 0, tzinfo=UTC)


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
        if not 0 <= args[1] < len(args[0]):
            raise TaskFailed("States.Runtime", f"{expr}: index {args[1]} out of range")
        return args[0][args[1]]
    if fn == "States.ArrayLength":
        return len(args[0])
    if fn == "States.MathAdd":
        return args[0] + args[1]
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
        if op.endswith("Path"):  # variable-to-variable comparison: the reference is a path too
            op, ref = op[: -len("Path")], get_path(data, ref, context)
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
    """Runs of the state machine: which states ran, which functions were invoked, what was published.

    ``registry`` plays the Step Functions service's list of executions (what ListExecutions answers):
    each top-level :meth:`run` is RUNNING in it until it ends. Runs that share a registry see each other.
    """

    definition: dict[str, Any]
    handlers: dict[str, Any]  # function ARN -> handler
    s3: Any
    context_obj: Any = None
    registry: list[dict[str, Any]] = field(default_factory=list)
    states: list[str] = field(default_factory=list)
    invoked: list[tuple[str, Any]] = field(default_factory=list)
    published: list[dict[str, Any]] = field(default_factory=list)

    def run(self, data: Any, stop_at: str | None = None) -> Any:
        """One execution from StartAt (or up to ``stop_at``, excluded), registered while it runs."""
        name = f"run-{len(self.registry) + 1}"
        execution = {
            "ExecutionArn": EXECUTION_ARN.format(name),
            "StateMachineArn": STATE_MACHINE_ARN,
            "Name": name,
            "Status": "RUNNING",
            "StartDate": T0 + timedelta(seconds=len(self.registry)),
        }
        self.registry.append(execution)
        context = {
            "Execution": {"Id": execution["ExecutionArn"], "Name": name, "Input": data},
            "StateMachine": {"Id": STATE_MACHINE_ARN, "Name": "rentlake-test-retrain"},
        }
        try:
            out = self.walk(data, self.definition, context, stop_at)
        except BaseException:
            execution["Status"] = "FAILED"
            raise
        execution["Status"] = "SUCCEEDED"  # (or stopped at stop_at: not RUNNING any more either way)
        return out

    def list_executions(self, params: dict[str, Any]) -> dict[str, Any]:
        """ListExecutions: the executions of a state machine with a status, most recent first."""
        found = [
            e
            for e in self.registry
            if e["StateMachineArn"] == params["StateMachineArn"] and e["Status"] == params["StatusFilter"]
        ]
        found.sort(key=lambda e: e["StartDate"], reverse=True)
        return {"Executions": [{**e, "StartDate": e["StartDate"].isoformat()} for e in found]}

    def walk(
        self, data: Any, machine: dict[str, Any], context: dict[str, Any], stop_at: str | None = None
    ) -> Any:
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
        if state["Resource"] == "arn:aws:states:::aws-sdk:sfn:listExecutions":
            return self.list_executions(params)
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
        workers = state.get("MaxConcurrency", 0) or len(inputs)  # 0: no limit
        if workers <= 1:
            return [self.walk(x, processor, context) for x in inputs]
        # children side by side, as Step Functions runs them, at most MaxConcurrency at a time
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(lambda x: self.walk(x, processor, context), inputs))


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


# The first states of an execution that finds no other one running.
ALONE = ["ListRunning", "AnyRunning", "OldestRunning", "OneAtATime"]
SKIPPED = [*ALONE, "AlreadyRunning", "Skipped"]


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
    assert machine.states == [
        *ALONE,
        "Mode",
        "CleanPending",
        "AnythingNew",
        "NothingNew",
        "Notify",
        "Done",
    ]
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


# ------------------------------------------------------------------------------------------ one at a time
def test_a_second_start_while_one_runs_ends_cleanly_and_the_first_goes_on(
    machine: Execution, function: Any, put_landing: Any, lake: Any, lambda_context: Any
) -> None:
    # GIVEN new data, and a second execution started while the first one explores
    event = put_landing("house_intact.csv", (SAMPLES / "house_intact.csv").read_bytes())
    function("ingest").handler(event, lambda_context)
    second = Execution(machine.definition, dict(machine.handlers), lake.s3, lambda_context, machine.registry)
    seen: dict[str, Any] = {}
    explore_arn = next(a for a in machine.handlers if a.endswith("-explore"))
    explore = machine.handlers[explore_arn]

    def explore_while_a_second_run_starts(event: Any, ctx: Any) -> Any:
        seen["output"] = second.run({"trigger": "manual"})
        return explore(event, ctx)

    machine.handlers[explore_arn] = explore_while_a_second_run_starts

    # WHEN the first (scheduled) execution runs
    out = machine.run({"trigger": "schedule"})

    # THEN the second one ended at once, successfully, saying which execution is running, and did nothing
    first_arn = EXECUTION_ARN.format("run-1")
    assert seen["output"] == {
        "outcome": "already_running",
        "message": "another retraining execution is running; this one did nothing",
        "running_execution": first_arn,
        "input": {"trigger": "manual"},
    }
    assert second.states == SKIPPED
    assert second.invoked == [] and second.published == []
    # AND the first one ran every stage and notified once
    assert machine.states[: len(ALONE) + 1] == [*ALONE, "Mode"]
    assert [a.rsplit("-", 1)[1] for a, _ in machine.invoked] == ["clean", "explore", "train", "evaluate"]
    assert out["clean"]["batches"] == 1 and len(machine.published) == 1
    assert [e["Status"] for e in machine.registry] == ["SUCCEEDED", "SUCCEEDED"]

    # AND once it has ended, the next execution is not blocked
    machine.states.clear()
    machine.run({"trigger": "schedule"}, stop_at="CleanPending")
    assert machine.states == [*ALONE, "Mode"]


@pytest.mark.parametrize(
    ("other_started", "expected"),
    [
        (timedelta(hours=-1), SKIPPED),  # an older execution runs: this one stops
        (timedelta(days=1), [*ALONE, "Mode"]),  # started together, this one is the older: it goes on
    ],
)
def test_of_two_running_executions_only_the_older_goes_on(
    machine: Execution, other_started: timedelta, expected: list[str]
) -> None:
    other = EXECUTION_ARN.format("other")
    machine.registry.append(
        {
            "ExecutionArn": other,
            "StateMachineArn": STATE_MACHINE_ARN,
            "Name": "other",
            "Status": "RUNNING",
            "StartDate": T0 + other_started,
        }
    )
    # executions of another state machine, or that ended, never count
    machine.registry.append({**machine.registry[0], "StateMachineArn": STATE_MACHINE_ARN + "-x", "Name": "x"})
    machine.registry.append(
        {**machine.registry[0], "Status": "SUCCEEDED", "StartDate": T0 - timedelta(days=1)}
    )
    out = machine.run({"trigger": "schedule"}, stop_at="CleanPending")
    assert machine.states == expected
    assert machine.invoked == [] and machine.published == []
    if expected == SKIPPED:
        assert out["outcome"] == "already_running" and out["running_execution"] == other


def test_an_execution_the_listing_does_not_show_yet_goes_on(
    machine: Execution, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ListExecutions is eventually consistent: right after the start it may list nothing at all
    monkeypatch.setattr(machine, "list_executions", lambda params: {"Executions": []})
    machine.run({"trigger": "schedule"}, stop_at="CleanPending")
    assert machine.states == ["ListRunning", "AnyRunning", "Mode"]


def test_a_failing_listing_notifies_and_fails(machine: Execution, monkeypatch: pytest.MonkeyPatch) -> None:
    def denied(params: dict[str, Any]) -> dict[str, Any]:
        raise TaskFailed("Sfn.SfnException", "not authorized to perform: states:ListExecutions")

    monkeypatch.setattr(machine, "list_executions", denied)
    with pytest.raises(TaskFailed):
        machine.run({"trigger": "schedule"})
    assert machine.states == ["ListRunning", "NotifyFailure", "Failed"]
    assert "ListExecutions" in machine.published[-1]["Message"]


# ------------------------------------------------------------------------------------------ backfill
def test_backfill_cleans_one_batch_at_a_time_so_each_sees_the_rows_cleaned_before_it(
    machine: Execution, function: Any, put_landing: Any, lake: Any, lambda_context: Any
) -> None:
    # GIVEN two landed files whose rows overlap: the second repeats every row of the first
    lines = (SAMPLES / "house_intact.csv").read_bytes().splitlines(keepends=True)
    half = len(lines) // 2
    for name, body in (("first.csv", b"".join(lines[:half])), ("all.csv", b"".join(lines))):
        function("ingest").handler(put_landing(name, body), lambda_context)
    # AND a clean function that counts how many of its invocations overlap
    clean_arn = next(a for a in machine.handlers if a.endswith("-clean"))
    clean = machine.handlers[clean_arn]
    guard, one_at_a_time = threading.Lock(), threading.Lock()
    in_flight = {"now": 0, "max": 0}

    def counted_clean(event: Any, ctx: Any) -> Any:
        with guard:
            in_flight["now"] += 1
            in_flight["max"] = max(in_flight["max"], in_flight["now"])
        try:
            time.sleep(0.2)  # long enough for children started together to overlap here
            with one_at_a_time:  # the moto lake and the handler itself run one call at a time
                return clean(event, ctx)
        finally:
            with guard:
                in_flight["now"] -= 1

    machine.handlers[clean_arn] = counted_clean
    # WHEN a backfill cleans them, one ingestion id per child
    machine.definition["States"]["BackfillClean"]["ItemBatcher"]["MaxItemsPerBatch"] = 1
    out = machine.run({"backfill": True}, stop_at="Explore")
    # THEN the two children cleaned one after the other
    assert len(out["backfill_clean"]) == 2 and in_flight["max"] == 1
    # AND every repeated row was caught against the rows the other batch had committed: the clean zone
    # holds each row once (batches cleaned side by side would each have kept their copy)
    assert not lake.read_clean("listings")["row_hash"].duplicated().any()
    repeated = half - 1  # the data rows of first.csv, all of them in all.csv
    assert sum(r["rows"]["quarantined"] for r in out["backfill_clean"]) >= repeated
