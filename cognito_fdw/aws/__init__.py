"""Everything that reaches Cognito or a credential: the client and its requests
(:mod:`.client`, :mod:`.attempts`), the request-rate cap (:mod:`.ratelimit`, :mod:`.quota`),
the scan that runs a plan (:mod:`.scan`), and where keys come from (:mod:`.credentials`,
:mod:`.secrets`).  Only this package and the tools import boto3 or botocore
(tests/unit/test_layout.py), apart from :mod:`cognito_fdw.errors`, which translates
botocore's exceptions.
"""
