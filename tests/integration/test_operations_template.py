"""infra/operations.yaml in the packaged template: alarms, their topic, the dashboard, the API stage.

No AWS: the real ``chalice package --merge-template`` builds the dev template once per
module (a few seconds), and the tests read it the way CloudFormation would, with the
stack's parameter defaults.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tools.deploy import package, templates
from tools.resources import load_template
from tools.shared import stage_environment

ROOT = Path(__file__).resolve().parents[2]
TOPIC = {"Ref": "AlarmTopic"}
API_DIMENSIONS = {"ApiName": {"Fn::Sub": "babysitting-booking-${Stage}"}, "Stage": "api"}


@pytest.fixture(scope="module")
def packaged(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("operations") / "package-dev"
    sam = package.package("dev", out, out=lambda _line: None)
    return json.loads(sam.read_text())


def _resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r.get("Type") == kind}


def _alarms(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: r["Properties"] for name, r in _resources(template, "AWS::CloudWatch::Alarm").items()}


def _dimensions(alarm: dict[str, Any]) -> dict[str, Any]:
    return {d["Name"]: d["Value"] for d in alarm.get("Dimensions", [])}


def _condition(template: dict[str, Any], name: str, params: dict[str, Any]) -> bool:
    """Evaluates a condition made of Equals, Not and Ref over parameter values."""

    def value(expr: Any) -> Any:
        if isinstance(expr, dict) and "Ref" in expr:
            return params[expr["Ref"]]
        if isinstance(expr, dict) and "Fn::Equals" in expr:
            left, right = expr["Fn::Equals"]
            return value(left) == value(right)
        if isinstance(expr, dict) and "Fn::Not" in expr:
            return not value(expr["Fn::Not"][0])
        if isinstance(expr, dict) and "Condition" in expr:
            return value(template["Conditions"][expr["Condition"]])
        return expr

    return bool(value(template["Conditions"][name]))


def _defaults(template: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    return {name: spec.get("Default") for name, spec in template["Parameters"].items()} | overrides


# ------------------------------------------------------------------------ the topic


def test_alarms_go_to_one_topic_with_an_optional_email_subscription(packaged: dict) -> None:
    (topic,) = _resources(packaged, "AWS::SNS::Topic").values()
    assert topic["Properties"]["TopicName"] == {"Fn::Sub": "booking-alarms-${Stage}"}
    assert packaged["Outputs"]["AlarmTopicArn"]["Value"] == TOPIC

    (subscription,) = _resources(packaged, "AWS::SNS::Subscription").values()
    assert subscription["Properties"] == {"TopicArn": TOPIC, "Protocol": "email", "Endpoint": {"Ref": "AlarmEmail"}}
    condition = subscription["Condition"]
    assert packaged["Parameters"]["AlarmEmail"]["Default"] == ""
    assert _condition(packaged, condition, _defaults(packaged)) is False
    assert _condition(packaged, condition, _defaults(packaged, AlarmEmail="oncall@example.com")) is True
    pattern = packaged["Parameters"]["AlarmEmail"]["AllowedPattern"]
    assert re.fullmatch(pattern, "") and re.fullmatch(pattern, "oncall@example.com")
    assert not re.fullmatch(pattern, "not an address")


def test_every_alarm_notifies_the_topic_and_treats_missing_data_as_fine(packaged: dict) -> None:
    alarms = _alarms(packaged)
    assert len(alarms) >= 15
    for name, alarm in alarms.items():
        assert alarm["AlarmActions"] == [TOPIC], name
        assert alarm["OKActions"] == [TOPIC], name
        # Counts and rates: no data means nothing happened (no traffic, an empty queue).
        assert alarm["TreatMissingData"] == "notBreaching", name
        assert alarm["AlarmName"]["Fn::Sub"].startswith("booking-${Stage}-"), name
        assert alarm.get("AlarmDescription"), name


# ----------------------------------------------------------------------- the alarms

# (namespace, metric, dimensions, statistic or p99, threshold, operator)
EXPECTED = {
    "DeclinesDeadLetterAlarm": (
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
        {"QueueName": {"Fn::GetAtt": ["DeclinesDeadLetterQueue", "QueueName"]}},
        "Maximum",
        0,
        "GreaterThanThreshold",
    ),
    "DeclinesBacklogAgeAlarm": (
        "AWS/SQS",
        "ApproximateAgeOfOldestMessage",
        {"QueueName": {"Fn::GetAtt": ["DeclinesQueue", "QueueName"]}},
        "Maximum",
        {"Ref": "DeclinesMaxAgeSeconds"},
        "GreaterThanThreshold",
    ),
    "DeclinesNotQueuedAlarm": (
        "BabysittingBooking",
        "DeclinesNotQueued",
        {"service": "booking"},
        "Sum",
        0,
        "GreaterThanThreshold",
    ),
    "Api5xxRateAlarm": (
        "AWS/ApiGateway",
        "5XXError",
        API_DIMENSIONS,
        "Average",
        {"Ref": "Api5xxRateThreshold"},
        "GreaterThanThreshold",
    ),
    "ApiLatencyP99Alarm": (
        "AWS/ApiGateway",
        "Latency",
        API_DIMENSIONS,
        "p99",
        {"Ref": "ApiLatencyP99ThresholdMs"},
        "GreaterThanThreshold",
    ),
}


@pytest.mark.parametrize("logical_id", sorted(EXPECTED))
def test_alarm_watches_the_right_metric(packaged: dict, logical_id: str) -> None:
    namespace, metric, dimensions, statistic, threshold, operator = EXPECTED[logical_id]
    alarm = _alarms(packaged)[logical_id]
    assert (alarm["Namespace"], alarm["MetricName"]) == (namespace, metric)
    assert _dimensions(alarm) == dimensions
    if statistic.startswith("p"):
        assert alarm["ExtendedStatistic"] == statistic and "Statistic" not in alarm
    else:
        assert alarm["Statistic"] == statistic
    assert alarm["Threshold"] == threshold
    assert alarm["ComparisonOperator"] == operator


def test_alarm_thresholds_default_to_sensible_values(packaged: dict) -> None:
    params = _defaults(packaged)
    assert params["DeclinesMaxAgeSeconds"] == 300
    # A share of requests, not a count: the Average of 5XXError.
    assert 0 < params["Api5xxRateThreshold"] <= 0.05
    assert params["ApiLatencyP99ThresholdMs"] >= 1000


def test_each_function_has_an_errors_and_a_throttles_alarm(packaged: dict) -> None:
    functions = set(_resources(packaged, "AWS::Serverless::Function"))
    assert functions == {"APIHandler", "TokenAuthorizer", "DeclineWorker", "SettleDueJobs", "TableStream", "MailWorker"}
    watched = {
        (_dimensions(a)["FunctionName"]["Ref"], a["MetricName"])
        for a in _alarms(packaged).values()
        if a["Namespace"] == "AWS/Lambda" and a["MetricName"] != "IteratorAge"
    }
    assert watched == {(f, m) for f in functions for m in ("Errors", "Throttles")}
    for alarm in _alarms(packaged).values():
        if alarm["Namespace"] == "AWS/Lambda" and alarm["MetricName"] != "IteratorAge":
            assert (alarm["Statistic"], alarm["Threshold"], alarm["ComparisonOperator"]) == (
                "Sum",
                0,
                "GreaterThanThreshold",
            )


def _dynamodb_operations() -> set[str]:
    """Every DynamoDB operation the service's code makes, from the store's call sites."""
    calls = set()
    for path in (ROOT / "chalicelib").glob("*.py"):
        calls |= set(re.findall(r'(?:_call|_all_pages)\(\s*"([a-z_]+)"', path.read_text()))
    assert calls, "no DynamoDB call sites found in chalicelib/"
    return {"".join(part.title() for part in call.split("_")) for call in calls}


def test_table_throttles_are_alarmed_for_every_operation_the_service_makes(packaged: dict) -> None:
    throttles = [a for a in _alarms(packaged).values() if a["Namespace"] == "AWS/DynamoDB"]
    for alarm in throttles:
        assert alarm["MetricName"] == "ThrottledRequests"
        assert _dimensions(alarm)["TableName"] == {"Ref": "Table"}
        assert (alarm["Statistic"], alarm["Threshold"], alarm["ComparisonOperator"]) == (
            "Sum",
            0,
            "GreaterThanThreshold",
        )
    alarmed = {_dimensions(a)["Operation"] for a in throttles}
    assert _dynamodb_operations() <= alarmed
    assert {"TransactWriteItems", "Query", "UpdateItem", "Scan"} <= alarmed


def test_the_service_metric_alarm_matches_what_powertools_publishes(packaged: dict) -> None:
    alarm = _alarms(packaged)["DeclinesNotQueuedAlarm"]
    env = json.loads((ROOT / ".chalice" / "config.json").read_text())["environment_variables"]
    # powertools' Metrics publishes EMF with one dimension set: [["service"]].
    assert alarm["Namespace"] == env["POWERTOOLS_METRICS_NAMESPACE"]
    assert _dimensions(alarm) == {"service": env["POWERTOOLS_SERVICE_NAME"]}
    assert "DeclinesNotQueued" in (ROOT / "chalicelib" / "booking.py").read_text()


# -------------------------------------------------------------------- the dashboard


def _placeholders(template: dict[str, Any]) -> dict[str, str]:
    values = {name: str(v) for name, v in _defaults(template).items() if v is not None}
    values |= {"AWS::Region": "us-east-1", "AWS::Partition": "aws", "AWS::AccountId": "123456789012"}
    return values


def _resolve(expr: Any, values: dict[str, str]) -> str:
    """A dimension value as text: parameters by default, resources as <Name> or <Name.Attr>."""
    if isinstance(expr, str):
        return expr
    if "Ref" in expr:
        return values.get(expr["Ref"], f"<{expr['Ref']}>")
    if "Fn::GetAtt" in expr:
        return "<{}.{}>".format(*expr["Fn::GetAtt"])
    if "Fn::Sub" in expr:
        return re.sub(r"\$\{([^}]+)\}", lambda m: values.get(m.group(1), f"<{m.group(1)}>"), expr["Fn::Sub"])
    raise AssertionError(f"cannot resolve {expr}")


def _dashboard_metrics(template: dict[str, Any]) -> set[tuple[str, str, frozenset]]:
    """Every (namespace, metric, dimensions) the dashboard draws, its "." and "..." expanded."""
    (dashboard,) = _resources(template, "AWS::CloudWatch::Dashboard").values()
    body = json.loads(_resolve(dashboard["Properties"]["DashboardBody"], _placeholders(template)))
    drawn = set()
    for widget in body["widgets"]:
        previous: list[str] = []
        for row in widget["properties"].get("metrics", []):
            items = [i for i in row if not isinstance(i, dict)]
            if items and items[0] == "...":
                items = previous[: len(previous) - (len(items) - 1)] + items[1:]
            else:
                items = [previous[i] if item == "." else item for i, item in enumerate(items)]
            previous = items
            namespace, metric, *dims = items
            drawn.add((namespace, metric, frozenset(zip(dims[::2], dims[1::2], strict=True))))
    return drawn


def test_the_dashboard_shows_every_alarmed_metric(packaged: dict) -> None:
    drawn = _dashboard_metrics(packaged)
    values = _placeholders(packaged)
    for name, alarm in _alarms(packaged).items():
        dims = frozenset((k, _resolve(v, values)) for k, v in _dimensions(alarm).items())
        assert (alarm["Namespace"], alarm["MetricName"], dims) in drawn, name


def test_the_dashboard_shows_throttle_events_of_the_table_and_each_index(packaged: dict) -> None:
    drawn = _dashboard_metrics(packaged)
    indexes = [g["IndexName"] for g in packaged["Resources"]["Table"]["Properties"]["GlobalSecondaryIndexes"]]
    for metric in ("ReadThrottleEvents", "WriteThrottleEvents"):
        assert ("AWS/DynamoDB", metric, frozenset({("TableName", "<Table>")})) in drawn
        for index in indexes:
            dims = frozenset({("TableName", "<Table>"), ("GlobalSecondaryIndexName", index)})
            assert ("AWS/DynamoDB", metric, dims) in drawn, (metric, index)


# -------------------------------------------------------------------- the API stage


def test_the_api_stage_is_throttled_logged_and_traced(packaged: dict) -> None:
    api = packaged["Resources"]["RestAPI"]
    # Still Chalice's API, with the properties of operations.yaml merged in.
    assert api["Type"] == "AWS::Serverless::Api"
    assert api["Properties"]["StageName"] == "api" and "DefinitionBody" in api["Properties"]
    props = api["Properties"]
    assert props["TracingEnabled"] is True
    assert props["MethodSettings"] == [
        {
            "ResourcePath": "/*",
            "HttpMethod": "*",
            "ThrottlingRateLimit": {"Ref": "ApiThrottleRateLimit"},
            "ThrottlingBurstLimit": {"Ref": "ApiThrottleBurstLimit"},
        }
    ]
    params = _defaults(packaged)
    assert 0 < params["ApiThrottleRateLimit"] <= params["ApiThrottleBurstLimit"]
    # The alarms' ApiName dimension is this name: one per stage.
    assert props["Name"] == API_DIMENSIONS["ApiName"]

    access = props["AccessLogSetting"]
    assert access["DestinationArn"] == {"Fn::GetAtt": ["ApiAccessLogGroup", "Arn"]}
    line = json.loads(access["Format"])
    assert line["requestId"] == "$context.requestId"
    assert {"status", "httpMethod", "resourcePath", "responseLatency", "xrayTraceId"} <= set(line)
    group = packaged["Resources"]["ApiAccessLogGroup"]
    assert group["Type"] == "AWS::Logs::LogGroup"
    assert group["Properties"]["RetentionInDays"] == {"Ref": "AccessLogRetentionDays"}
    assert params["AccessLogRetentionDays"] in packaged["Parameters"]["AccessLogRetentionDays"]["AllowedValues"]


def test_api_gateway_may_write_the_access_logs_before_the_stage_exists(packaged: dict) -> None:
    account = packaged["Resources"]["ApiGatewayAccount"]
    assert account["Type"] == "AWS::ApiGateway::Account"
    assert "ApiGatewayAccount" in packaged["Resources"]["RestAPI"]["DependsOn"]
    role = packaged["Resources"]["ApiGatewayCloudWatchRole"]
    assert _condition(packaged, role["Condition"], _defaults(packaged)) is True
    existing = "arn:aws:iam::123456789012:role/apigw-logs"
    assert _condition(packaged, role["Condition"], _defaults(packaged, ApiGatewayCloudWatchRoleArn=existing)) is False
    assert role["DeletionPolicy"] == "Retain"
    assert role["Properties"]["ManagedPolicyArns"] == [
        {"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs"}
    ]


def test_every_function_is_traced(packaged: dict) -> None:
    # Chalice sets Tracing: Active for a stage with "xray": true; nothing overrides it.
    for name, function in _resources(packaged, "AWS::Serverless::Function").items():
        assert function["Properties"]["Tracing"] == "Active", name


def test_the_packaged_template_still_passes_the_deploy_checks(packaged: dict) -> None:
    templates.check_packaged_template(packaged, stage_environment("dev"))
    assert all("Type" in r for r in packaged["Resources"].values())


def test_the_resources_stack_alone_carries_no_operations() -> None:
    # `deploy --via chalice` deploys infrastructure_template() on its own, without
    # Chalice's RestAPI and functions that operations.yaml names.
    alone = templates.infrastructure_template()["Resources"]
    operations = load_template(templates.OPERATIONS_TEMPLATE)["Resources"]
    assert not set(alone) & set(operations)
    assert all("Type" in r for r in alone.values())


# ------------------------------------------------------------------------ the table


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_only_the_prod_table_has_deletion_protection(stage: str) -> None:
    template = templates.infrastructure_template(stage)
    table = template["Resources"]["Table"]
    assert table["DeletionPolicy"] == table["UpdateReplacePolicy"] == "Retain"
    condition, when_true, when_false = table["Properties"]["DeletionProtectionEnabled"]["Fn::If"]
    assert (when_true, when_false) == (True, False)
    assert _condition(template, condition, _defaults(template)) is (stage == "prod")


def test_queues_and_table_are_encrypted_at_rest(packaged: dict) -> None:
    # What the checkov skips CKV_AWS_27 and CKV_AWS_119 rely on (.checkov.yaml).
    queues = _resources(packaged, "AWS::SQS::Queue")
    assert len(queues) == 5
    for name, queue in queues.items():
        props = queue["Properties"]
        assert props.get("SqsManagedSseEnabled") is True or "KmsMasterKeyId" in props, name
    for name, table in _resources(packaged, "AWS::DynamoDB::Table").items():
        assert table["Properties"]["SSESpecification"]["SSEEnabled"] is True, name


# ---------------------------------------------------------------------- checkov list


def _skipped_check_ids() -> set[str]:
    config = yaml.safe_load((ROOT / ".checkov.yaml").read_text())
    ids = set(config["skip-check"])
    for path in (ROOT / "infra").glob("*.yaml"):
        ids |= set(re.findall(r"id: (CKV2?_AWS_\d+)", path.read_text()))
    return ids


def test_the_docs_list_every_skipped_checkov_check_with_a_reason() -> None:
    """docs/deploying.md#template-checks gives each skipped check its reason."""
    page = (ROOT / "docs" / "deploying.md").read_text()
    section = page.split("\n## Template checks\n", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^- `(CKV2?_AWS_\d+)`[^\n]*\S", section, flags=re.MULTILINE))
    assert listed == _skipped_check_ids()
