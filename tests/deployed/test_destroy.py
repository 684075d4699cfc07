"""`make destroy` (runs last, see conftest): asks first, then deletes the stack and keeps the table."""

from __future__ import annotations

from tests.deployed.stage import FIGURES, STAGE, Deployment, run_make
from tools.deploy import cfn_stack


def test_destroy_refuses_without_an_answer_then_deletes_the_stack_and_keeps_the_table(deployment: Deployment) -> None:
    cfn, dynamodb, ssm = (deployment.client(s) for s in ("cloudformation", "dynamodb", "ssm"))

    # Given no standard input: nothing is deleted
    refused = run_make(deployment.endpoint, "destroy")
    assert refused.returncode != 0
    assert "no answer on standard input" in refused.output and "YES=1" in refused.output
    assert cfn_stack.describe(cfn, f"booking-{STAGE}") is not None

    # And a wrong answer neither
    wrong = run_make(deployment.endpoint, "destroy", stdin="prod\n")
    assert wrong.returncode != 0 and "not confirmed" in wrong.output

    # When the stage's name is typed
    run = run_make(deployment.endpoint, "destroy", stdin=f"{STAGE}\n")
    FIGURES.append(f"make destroy: {run.seconds:.1f} s")

    # Then the stack and the key are gone, the table is kept with how to delete it
    assert run.returncode == 0, run.output
    assert cfn_stack.describe(cfn, f"booking-{STAGE}") is None
    assert f"booking-{STAGE}" in dynamodb.list_tables()["TableNames"]
    assert f"aws dynamodb delete-table --table-name booking-{STAGE}" in run.output
    assert f"aws cognito-idp delete-user-pool --user-pool-id {deployment.outputs['UserPoolId']}" in run.output
    assert "artifacts bucket booking-artifacts-000000000000-us-east-1-dev" in run.output
    assert not ssm.get_parameters(Names=["/booking/dev/page-token-secret"])["Parameters"]
    functions = deployment.client("lambda").list_functions()["Functions"]
    assert not [f for f in functions if f["FunctionName"].startswith("babysitting-booking-dev")]
