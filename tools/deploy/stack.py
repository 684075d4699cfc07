"""The default deploy path: the packaged template as ONE CloudFormation stack, ``booking-<stage>``.

``chalice package --merge-template`` (tools/deploy/templates.py) → an artifacts bucket this
command owns → ``deployment.zip`` uploaded under its content hash, the template's
``CodeUri`` pointed at it (what ``aws cloudformation package`` does) → create or update the
stack with CAPABILITY_IAM + CAPABILITY_AUTO_EXPAND → wait → its outputs. CloudFormation
holds the state, so a second run, from any clone, updates the same stack in place.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from tools.deploy import cfn_stack, preflight
from tools.deploy.package import package
from tools.deploy.secret import ensure_page_token_key
from tools.deploy.settings import (
    APP_NAME,
    DeployError,
    describe_target,
    emulated_cognito_base,
    require_deployable,
    stack_name,
    step,
)
from tools.deploy.templates import STREAM_PARTIAL_PARAMETER
from tools.deploy.via_chalice import refuse_retained_table
from tools.shared import ROOT, Printer, Runner, run_command, say

CAPABILITIES = ("CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND")
# The outputs worth printing, in this order.
SHOWN_OUTPUTS = (
    "EndpointURL",
    "RestAPIId",
    "UserPoolId",
    "AppClientId",
    "AdminClientId",
    "TableName",
    "DeclinesQueueUrl",
    "DeclinesDeadLetterQueueUrl",
)


def artifacts_bucket_name(account: str, region: str, stage: str) -> str:
    """One bucket per account, region and stage; S3 names are global and at most 63 characters."""
    name = f"booking-artifacts-{account}-{region}-{stage}"
    if len(name) > 63:
        digest = hashlib.sha256(name.encode()).hexdigest()[:12]
        name = f"booking-artifacts-{account}-{digest}"
    return name.lower()


def ensure_artifacts_bucket(s3: Any, name: str, *, account: str, region: str, stage: str, out: Printer = say) -> None:
    """Creates the bucket unless this account already has it; never uses someone else's."""
    try:
        s3.head_bucket(Bucket=name, ExpectedBucketOwner=account)
        out(f"    artifacts bucket {name}")
        return
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if code in ("403", "AccessDenied"):
            raise DeployError(f"bucket {name} exists but belongs to another account") from exc
        if code not in ("404", "NoSuchBucket", "NotFound"):
            raise
    request: dict[str, Any] = {"Bucket": name}
    if region != "us-east-1":
        request["CreateBucketConfiguration"] = {"LocationConstraint": region}
    s3.create_bucket(**request)
    s3.put_public_access_block(
        Bucket=name,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    s3.put_bucket_tagging(
        Bucket=name, Tagging={"TagSet": [{"Key": "app", "Value": APP_NAME}, {"Key": "stage", "Value": stage}]}
    )
    out(f"    created artifacts bucket {name}")


def content_digest(path: Path) -> str:
    """A zip's digest over its entries' names and contents, not its timestamps.

    ``chalice package`` builds a new zip each time; an unchanged app must still give the
    same key, so that the template is unchanged and the stack update a no-op.
    """
    digest = hashlib.sha256()
    with zipfile.ZipFile(path) as zf:
        for info in sorted(zf.infolist(), key=lambda i: i.filename):
            digest.update(f"{info.filename}\0{info.CRC:08x}\0{info.file_size}\0{info.external_attr}\n".encode())
    return digest.hexdigest()


def upload(s3: Any, bucket: str, path: Path, prefix: str, *, account: str, out: Printer = say) -> str:
    """Uploads the zip under its content digest (an unchanged app is neither re-sent nor redeployed)."""
    digest = content_digest(path)
    key = f"{prefix}/{digest}{path.suffix}"
    try:
        s3.head_object(Bucket=bucket, Key=key, ExpectedBucketOwner=account)
        out(f"    s3://{bucket}/{key} (already uploaded)")
    except ClientError:
        s3.upload_file(str(path), bucket, key, ExtraArgs={"ExpectedBucketOwner": account})
        out(f"    uploaded s3://{bucket}/{key} ({path.stat().st_size / 1e6:.1f} MB)")
    return key


def point_code_at(template: dict[str, Any], bucket: str, key: str) -> dict[str, Any]:
    """Every function's local ``CodeUri`` → the uploaded zip, as ``aws cloudformation package`` does."""
    pointed = 0
    for resource in template.get("Resources", {}).values():
        props = resource.get("Properties", {})
        code = props.get("CodeUri")
        if resource.get("Type") == "AWS::Serverless::Function" and isinstance(code, str) and "://" not in code:
            props["CodeUri"] = {"Bucket": bucket, "Key": key}
            pointed += 1
    if not pointed:
        raise DeployError("the packaged template has no function with a local CodeUri")
    return template


def template_source(s3: Any, bucket: str, body: str, prefix: str, *, account: str) -> dict[str, str]:
    """TemplateBody when CloudFormation accepts it inline, else a TemplateURL in the bucket."""
    if len(body.encode()) <= cfn_stack.MAX_TEMPLATE_BODY:
        return {"TemplateBody": body}
    key = f"{prefix}/{hashlib.sha256(body.encode()).hexdigest()}.template.json"
    s3.put_object(Bucket=bucket, Key=key, Body=body.encode(), ExpectedBucketOwner=account)
    return {"TemplateURL": f"{s3.meta.endpoint_url.rstrip('/')}/{bucket}/{key}"}


def deploy_packaged(
    stage: str,
    *,
    session: Any,
    parameters: dict[str, str] | None = None,
    build_dir: Path | None = None,
    run: Runner = run_command,
    project_dir: Path = ROOT,
    wait_delay: float = 5.0,
    out: Printer = say,
) -> dict[str, str]:
    """Packages, uploads and deploys the stage's stack; returns its outputs."""
    require_deployable(stage, project_dir)
    step(out, f"target of stage {stage}")
    target = describe_target(session, out)
    account, region = target["account"], target["region"]
    params = dict(parameters or {})
    jwks_base = emulated_cognito_base(session)
    # Set every time: a stack deployed against an emulator keeps nothing of it on AWS.
    params.setdefault("CognitoJwksBaseUrl", jwks_base or "")
    if jwks_base:
        out(f"    Cognito is emulated: JWKS under {jwks_base}")
    # MiniStack's stream subscriptions ignore ReportBatchItemFailures (they retry the whole
    # batch only on an error): there, the stream function fails whole batches instead.
    streams_emulated = emulated_streams(session)
    params.setdefault(STREAM_PARTIAL_PARAMETER, "false" if streams_emulated else "true")
    if streams_emulated:
        out("    DynamoDB Streams are emulated: the stream function fails whole batches (no partial responses)")
    name = stack_name(stage)
    cfn = session.client("cloudformation")
    step(out, "pre-flight")
    preflight.run(
        stage,
        session=session,
        parameters=params,
        previous=preflight.previous_parameters(cfn, name),
        jwks_base=jwks_base,
        project_dir=project_dir,
        out=out,
    )

    step(out, f"1/4 package into {build_dir or f'build/package-{stage}'}")
    sam = package(stage, build_dir, run=run, project_dir=project_dir, out=out)

    step(out, "2/4 upload the deployment package")
    s3 = session.client("s3")
    bucket = artifacts_bucket_name(account, region, stage)
    ensure_artifacts_bucket(s3, bucket, account=account, region=region, stage=stage, out=out)
    key = upload(s3, bucket, sam.with_name("deployment.zip"), stage, account=account, out=out)
    template = point_code_at(json.loads(sam.read_text(encoding="utf-8")), bucket, key)
    body = json.dumps(template, indent=1, sort_keys=True)
    sam.with_name("packaged.json").write_text(body, encoding="utf-8")

    step(out, "3/4 the page-token key in SSM")
    ensure_page_token_key(session.client("ssm"), stage, out=out)

    step(out, f"4/4 stack {name}")
    refuse_retained_table(cfn, session.client("dynamodb"), name, f"booking-{stage}")
    outputs = cfn_stack.ensure_stack(
        cfn,
        name,
        template=template_source(s3, bucket, body, stage, account=account),
        parameters={"Stage": stage, **params},
        tags={"app": APP_NAME, "stage": stage},
        capabilities=CAPABILITIES,
        wait_delay=wait_delay,
        out=out,
    )
    step(out, f"stage {stage} deployed: stack {name}")
    for key_name in SHOWN_OUTPUTS:
        out(f"    {key_name}: {outputs.get(key_name, '(none)')}")
    if jwks_base and outputs.get("RestAPIId"):
        out(f"    emulator URL: {emulated_api_url(session, outputs)}")
    return outputs


def emulated_streams(session: Any) -> bool:
    """True when the stack's Lambda reads DynamoDB streams somewhere other than AWS (an emulator)."""
    endpoint = session.client("lambda").meta.endpoint_url
    return not endpoint.rstrip("/").endswith(".amazonaws.com")


def emulated_api_url(session: Any, outputs: dict[str, str]) -> str:
    """Where MiniStack serves the stage: its EndpointURL output names AWS's host, which it does not answer."""
    endpoint = session.client("apigateway").meta.endpoint_url.rstrip("/")
    return f"{endpoint}/_aws/execute-api/{outputs['RestAPIId']}/{outputs['ApiStageName']}/"


def destroy_packaged(session: Any, stage: str, *, wait_delay: float = 5.0, out: Printer = say) -> bool:
    """Deletes ``booking-<stage>``; the table and user pool stay (DeletionPolicy Retain)."""
    return cfn_stack.delete_stack(session.client("cloudformation"), stack_name(stage), wait_delay=wait_delay, out=out)
