"""The artifact bucket: versioned, encrypted, private, TLS only. Retained on stack deletion."""

from __future__ import annotations

from awacs.aws import Bool, Condition, Deny, Policy, Principal, Statement
from awacs.s3 import Action as S3Action
from troposphere import GetAtt, Output, Ref, Sub, Tags, Template
from troposphere.s3 import (
    Bucket,
    BucketEncryption,
    BucketPolicy,
    LifecycleConfiguration,
    LifecycleRule,
    NoncurrentVersionExpiration,
    OwnershipControls,
    OwnershipControlsRule,
    PublicAccessBlockConfiguration,
    ServerSideEncryptionByDefault,
    ServerSideEncryptionRule,
    VersioningConfiguration,
)

from fleetkit.core.environment import Environment
from fleetkit.infra.blueprints.common import TAG_ENV

__all__ = ["add_artifact_bucket"]


def add_artifact_bucket(template: Template, env: Environment) -> object:
    """Add the bucket unless the environment names one; returns the bucket name (str or Ref)."""
    if env.artifacts.bucket:
        template.add_output(Output("ArtifactBucketName", Value=env.artifacts.bucket))
        return env.artifacts.bucket
    bucket = template.add_resource(
        Bucket(
            "ArtifactBucket",
            # Artifacts are what running instances install: never lose them with the stack.
            DeletionPolicy="Retain",
            UpdateReplacePolicy="Retain",
            VersioningConfiguration=VersioningConfiguration(Status="Enabled"),
            BucketEncryption=BucketEncryption(
                ServerSideEncryptionConfiguration=[
                    ServerSideEncryptionRule(
                        ServerSideEncryptionByDefault=ServerSideEncryptionByDefault(
                            SSEAlgorithm="AES256"
                        )
                    )
                ]
            ),
            PublicAccessBlockConfiguration=PublicAccessBlockConfiguration(
                BlockPublicAcls=True,
                BlockPublicPolicy=True,
                IgnorePublicAcls=True,
                RestrictPublicBuckets=True,
            ),
            OwnershipControls=OwnershipControls(
                Rules=[OwnershipControlsRule(ObjectOwnership="BucketOwnerEnforced")]
            ),
            LifecycleConfiguration=LifecycleConfiguration(
                Rules=[
                    LifecycleRule(
                        Id="expire-replaced-artifacts",
                        Status="Enabled",
                        NoncurrentVersionExpiration=NoncurrentVersionExpiration(NoncurrentDays=90),
                    )
                ]
            ),
            Tags=Tags({TAG_ENV: env.name}),
        )
    )
    template.add_resource(
        BucketPolicy(
            "ArtifactBucketPolicy",
            Bucket=Ref(bucket),
            PolicyDocument=Policy(
                Version="2012-10-17",
                Statement=[
                    Statement(
                        Sid="DenyInsecureTransport",
                        Effect=Deny,
                        Principal=Principal("*"),
                        Action=[S3Action("*")],
                        Resource=[GetAtt(bucket, "Arn"), Sub("${ArtifactBucket.Arn}/*")],
                        Condition=Condition(Bool("aws:SecureTransport", "false")),
                    )
                ],
            ),
        )
    )
    template.add_output(Output("ArtifactBucketName", Value=Ref(bucket)))
    return Ref(bucket)
