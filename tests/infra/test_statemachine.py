"""infra/statemachine/retrain.asl.json is well-formed ASL and references only what the template defines."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.infra.conftest import FUNCTIONS

LAMBDA_ERRORS = {
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
}
COMPARATORS = {
    "StringEquals",
    "NumericEquals",
    "NumericGreaterThan",
    "NumericLessThan",
    "BooleanEquals",
    "IsPresent",
    "IsNull",
    "StringMatches",
    "NumericGreaterThanEquals",
    "NumericLessThanEquals",
}
# Variable-to-variable comparators: their value is a path (of the input or of the context object).
PATH_COMPARATORS = {"StringEqualsPath", "NumericEqualsPath", "BooleanEqualsPath"}
LIST_EXECUTIONS = "arn:aws:states:::aws-sdk:sfn:listExecutions"
RESOURCES = {"arn:aws:states:::lambda:invoke", "arn:aws:states:::sns:publish", LIST_EXECUTIONS}


def machines(asl: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The top-level machine and every nested ItemProcessor/Iterator/Branch, with a name."""
    out = [("top", asl)]
    for name, st in asl["States"].items():
        sub = st.get("ItemProcessor") or st.get("Iterator")
        if sub:
            out.extend((f"{name}/{n}", m) for n, m in machines(sub))
        for i, branch in enumerate(st.get("Branches", [])):
            out.extend((f"{name}[{i}]/{n}", m) for n, m in machines(branch))
    return out


def targets(state: dict[str, Any]) -> list[str]:
    out = [state["Next"]] if "Next" in state else []
    out += [c["Next"] for c in state.get("Choices", [])]
    out += [state["Default"]] if "Default" in state else []
    out += [c["Next"] for c in state.get("Catch", [])]
    return out


def check_rule(rule: dict[str, Any], top: bool) -> None:
    if top:
        assert "Next" in rule
    keys = set(rule) - {"Next", "Comment"}
    if keys & {"And", "Or"}:
        (op,) = keys
        assert isinstance(rule[op], list) and rule[op]
        for sub in rule[op]:
            check_rule(sub, top=False)
    elif "Not" in keys:
        check_rule(rule["Not"], top=False)
    else:
        assert rule["Variable"].startswith("$"), rule
        ((op, value),) = ((k, rule[k]) for k in keys - {"Variable"})
        assert op in COMPARATORS | PATH_COMPARATORS, rule
        if op in PATH_COMPARATORS:
            assert isinstance(value, str) and value.startswith("$"), rule


@pytest.mark.parametrize("where", ["top", "BackfillClean/top"])
def test_every_target_exists_every_state_is_reachable_and_ends(asl: dict[str, Any], where: str) -> None:
    machine = dict(machines(asl))[where]
    states = machine["States"]
    assert machine["StartAt"] in states
    seen, todo = set(), [machine["StartAt"]]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for t in targets(states[name]):
            assert t in states, f"{name} -> {t}: no such state"
            todo.append(t)
    assert seen == set(states), f"unreachable: {set(states) - seen}"
    for name, st in states.items():
        kind = st["Type"]
        assert kind in {"Task", "Choice", "Pass", "Succeed", "Fail", "Map", "Parallel", "Wait"}
        if kind in ("Succeed", "Fail"):
            assert "Next" not in st and "End" not in st
        elif kind == "Choice":
            assert st["Choices"] and "Next" not in st
            for rule in st["Choices"]:
                check_rule(rule, top=True)
        else:
            assert ("Next" in st) != bool(st.get("End")), f"{name} needs exactly one of Next/End"
    assert any(st["Type"] in ("Succeed", "Fail") or st.get("End") for st in states.values())


def test_every_lambda_task_retries_service_errors_and_the_top_level_ones_catch_to_a_notified_failure(
    asl: dict[str, Any],
) -> None:
    states = asl["States"]
    for where, machine in machines(asl):
        for name, st in machine["States"].items():
            if st["Type"] != "Task":
                continue
            assert st["Resource"] in RESOURCES, st["Resource"]
            if st["Resource"].endswith("lambda:invoke"):
                retried = {e for r in st["Retry"] for e in r["ErrorEquals"]}
                assert retried >= LAMBDA_ERRORS, (where, name)
                assert all(r["MaxAttempts"] >= 2 and r["BackoffRate"] >= 1 for r in st["Retry"])
                if where == "top":
                    assert st["Catch"][0]["ErrorEquals"] == ["States.ALL"]
                    assert st["Catch"][0]["Next"] == "NotifyFailure"
    assert states["BackfillClean"]["Catch"][0]["Next"] == "NotifyFailure"
    assert states["ListRunning"]["Catch"][0] == {
        "ErrorEquals": ["States.ALL"],
        "ResultPath": "$.error",
        "Next": "NotifyFailure",
    }
    assert (
        states["NotifyFailure"]["Resource"].endswith("sns:publish")
        and states["NotifyFailure"]["Next"] == "Failed"
    )
    assert states["Failed"]["Type"] == "Fail"


def test_the_stages_run_in_order_and_the_gate_decides(asl: dict[str, Any]) -> None:
    s = asl["States"]
    assert s["CleanPending"]["Next"] == "AnythingNew" and s["BackfillClean"]["Next"] == "Explore"
    assert s["Explore"]["Next"] == "Train" and s["Train"]["Next"] == "Evaluate"
    assert s["Evaluate"]["Next"] == "QualityGate"
    gate = s["QualityGate"]
    assert gate["Choices"] == [
        {"Variable": "$.evaluation.promoted", "BooleanEquals": True, "Next": "Promoted"}
    ]
    assert gate["Default"] == "ChampionKept"
    assert s["Promoted"]["Next"] == s["ChampionKept"]["Next"] == s["NothingNew"]["Next"] == "Notify"


def test_backfill_is_a_bounded_distributed_map_over_the_ingestion_ledger(asl: dict[str, Any]) -> None:
    m = asl["States"]["BackfillClean"]
    assert m["Type"] == "Map" and m["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED"
    assert m["ItemReader"]["Resource"] == "arn:aws:states:::s3:listObjectsV2"
    assert m["ItemReader"]["Parameters"] == {"Bucket": "${LakeBucket}", "Prefix": "raw/_ingestions/"}
    # one batch at a time: batches cleaned side by side would not see each other's rows (duplicates)
    assert m["MaxConcurrency"] == 1
    assert m["ItemBatcher"]["MaxItemsPerBatch"] >= 1
    task = m["ItemProcessor"]["States"]["CleanBatch"]
    assert task["Parameters"]["Payload"] == {"ingestion_ids.$": "$.Items[*].ingestion_id"}


def test_an_execution_first_checks_that_no_other_one_is_running(asl: dict[str, Any]) -> None:
    s = asl["States"]
    assert asl["StartAt"] == "ListRunning"
    listing = s["ListRunning"]
    assert listing["Resource"] == LIST_EXECUTIONS
    # its own state machine, from the context object: no ARN to substitute, no self-reference in the template
    assert listing["Parameters"] == {"StateMachineArn.$": "$$.StateMachine.Id", "StatusFilter": "RUNNING"}
    assert listing["Next"] == "AnyRunning" and s["AnyRunning"]["Default"] == "OldestRunning"
    assert s["OldestRunning"]["Next"] == "OneAtATime"
    gate = s["OneAtATime"]
    assert gate["Choices"] == [
        {"Variable": "$.running.oldest", "StringEqualsPath": "$$.Execution.Id", "Next": "Mode"}
    ]
    assert gate["Default"] == "AlreadyRunning"
    # a later execution ends cleanly, with an output that says why, and runs no task on the way
    assert s["AlreadyRunning"]["Type"] == "Pass"
    assert s["AlreadyRunning"]["Parameters"]["outcome"] == "already_running"
    assert s[s["AlreadyRunning"]["Next"]]["Type"] == "Succeed"


def test_placeholders_match_the_definition_substitutions(
    asl: dict[str, Any], sam_template: dict[str, Any]
) -> None:
    import json

    text = json.dumps(asl)
    placeholders = set(re.findall(r"\$\{(\w+)\}", text))
    props = sam_template["Resources"]["RetrainStateMachine"]["Properties"]
    subs = props["DefinitionSubstitutions"]
    assert placeholders == set(subs)
    # function ARNs point at functions of the template; the state machine invokes only the batch cycle
    arns = {k: v["Fn::GetAtt"][0] for k, v in subs.items() if k.endswith("FunctionArn")}
    assert set(arns.values()) == {"CleanFunction", "ExploreFunction", "TrainFunction", "EvaluateFunction"}
    assert set(arns.values()) <= set(FUNCTIONS)
    assert subs["NotificationsTopicArn"] == {"Ref": "NotificationsTopic"}
    assert subs["LakeBucket"] == sam_template["Resources"]["LakeBucket"]["Properties"]["BucketName"]
    assert props["DefinitionUri"] == "infra/statemachine/retrain.asl.json"


def test_transformed_state_machine_carries_the_substitutions(cfn_template: dict[str, Any]) -> None:
    sm = cfn_template["Resources"]["RetrainStateMachine"]["Properties"]
    assert set(sm["DefinitionSubstitutions"]) >= {"CleanFunctionArn", "NotificationsTopicArn", "LakeBucket"}
