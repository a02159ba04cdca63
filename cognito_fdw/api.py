"""Facts of Amazon Cognito's API that the wrapper relies on, each written once: pure.

Operations are named by their API names throughout (``ListUsers``, ``AdminGetUser``, ...),
as the API reference, CloudTrail and error messages spell them; only :mod:`client` turns
one into the boto3 client's method name.  Sources: the Amazon Cognito user pools API reference
(each operation's request syntax) and the request-rate quotas page.
"""

from __future__ import annotations

import unicodedata

# The largest page of ListUsers, ListGroups, ListUsersInGroup and AdminListGroupsForUser
# (their Limit is 0 to 60, 60 also the default); real Cognito rejects 61, moto does not.
PAGE_SIZE = 60

# Username and GroupName: 1 to 128 characters, pattern [\p{L}\p{M}\p{S}\p{N}\p{P}]+.
MAX_NAME_LENGTH = 128

# ListUsers' Filter: at most 256 characters.
MAX_FILTER_LENGTH = 256


def is_cognito_name(value: str) -> bool:
    """Whether a value could be a Username or GroupName at all.

    Both are 1 to :data:`MAX_NAME_LENGTH` characters of the Unicode categories letter,
    mark, symbol, number and punctuation.  Anything else is in no pool, and sending it
    would be refused as a parameter error (botocore checks the length, Cognito the
    pattern) rather than be "not found": a lookup of such a value is zero rows, not an error.
    """
    return 0 < len(value) <= MAX_NAME_LENGTH and all(
        unicodedata.category(c)[0] in "LMSNP" for c in value
    )
