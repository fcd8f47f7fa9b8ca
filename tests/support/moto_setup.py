#!/usr/bin/env python3
"""Prepares a moto_server started with INITIAL_NO_AUTH_ACTION_COUNT=3 for the tests.

The first three requests need no signature: they create an IAM user, its access key and
a policy that allows everything. From then on moto checks every signature and every
access key, as S3 does. The script then creates, signed with the new key, a role that
web identity and AssumeRole may take, the bucket `models`, and KEYS small objects under
`many/` (more than one ListObjectsV2 page), and takes the role once for temporary
credentials. It prints one JSON object: {"key_id", "secret", "role_arn", "role_credentials":
{"AccessKeyId", "SecretAccessKey", "Token"}}.
"""
import argparse
import concurrent.futures
import json

import boto3

ALLOW_ALL = json.dumps({"Version": "2012-10-17",
                        "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})
TRUST = json.dumps({"Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Principal": {"Federated": "*", "AWS": "*"},
                                   "Action": ["sts:AssumeRole", "sts:AssumeRoleWithWebIdentity"]}]})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--keys", type=int, default=1050)
    args = ap.parse_args()
    anon = dict(endpoint_url=args.endpoint, region_name="us-east-1",
                aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
    iam = boto3.client("iam", **anon)
    iam.create_user(UserName="modelstream")
    key = iam.create_access_key(UserName="modelstream")["AccessKey"]
    iam.put_user_policy(UserName="modelstream", PolicyName="all", PolicyDocument=ALLOW_ALL)
    signed = dict(endpoint_url=args.endpoint, region_name="us-east-1",
                  aws_access_key_id=key["AccessKeyId"],
                  aws_secret_access_key=key["SecretAccessKey"])
    iam = boto3.client("iam", **signed)
    role = iam.create_role(RoleName="loader", AssumeRolePolicyDocument=TRUST)["Role"]
    iam.put_role_policy(RoleName="loader", PolicyName="all", PolicyDocument=ALLOW_ALL)
    s3 = boto3.client("s3", **signed)
    s3.create_bucket(Bucket="models")

    def put(i):
        s3.put_object(Bucket="models", Key="many/obj-%05d" % i, Body=b"x" * (i % 7))

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(put, range(args.keys)))
    s3.put_object(Bucket="models", Key="many/sub/inner", Body=b"inner")
    # Temporary credentials of the role, as a container endpoint or IMDS would hand out.
    sts = boto3.client("sts", **signed)
    temp = sts.assume_role(RoleArn=role["Arn"], RoleSessionName="node")["Credentials"]
    print(json.dumps({"key_id": key["AccessKeyId"], "secret": key["SecretAccessKey"],
                      "role_arn": role["Arn"],
                      "role_credentials": {"AccessKeyId": temp["AccessKeyId"],
                                           "SecretAccessKey": temp["SecretAccessKey"],
                                           "Token": temp["SessionToken"]}}))


if __name__ == "__main__":
    main()
