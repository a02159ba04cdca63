"""cognito-fdw: an Amazon Cognito user pool as PostgreSQL foreign tables (Multicorn2).

Usage, in psql::

    CREATE EXTENSION multicorn;
    CREATE SERVER cognito_server FOREIGN DATA WRAPPER multicorn OPTIONS (
      wrapper 'cognito_fdw.CognitoFdw', region 'us-east-1',
      user_pool_id 'us-east-1_AbCdEf123');
    CREATE USER MAPPING FOR CURRENT_USER SERVER cognito_server OPTIONS (
      aws_access_key_id '...', aws_secret_access_key '...');
    CREATE SCHEMA cognito;
    CREATE FOREIGN TABLE cognito.users (
      username text, email text, status text, enabled boolean,
      created_at timestamp, updated_at timestamp, attributes jsonb
    ) SERVER cognito_server OPTIONS (object 'users');
    SELECT * FROM cognito.users;

The README lists every option and column.
"""

__version__ = "0.1.0"
__all__ = ["CognitoFdw", "__version__"]


def __getattr__(name):
    # Multicorn loads 'cognito_fdw.CognitoFdw'; importing it lazily keeps the package (the
    # CLI, the pure modules, unit tests) importable where multicorn is not installed.
    if name == "CognitoFdw":
        from .fdw import CognitoFdw

        return CognitoFdw
    raise AttributeError(f"module 'cognito_fdw' has no attribute {name!r}")
