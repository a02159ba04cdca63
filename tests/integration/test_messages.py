"""Tier 2: messages that say what is wrong and what to do, on the real server.

An endpoint_url that is some other web server, a mistyped region against AWS, the attribute
option naming a built-in column, a time in an ``interval`` column, a value longer than a
``varchar(n)`` or ``char(n)`` column and a number out of an integer column's range: each one
ERROR naming what it is about, never PostgreSQL's input error without a column, nor a value
silently stored.
"""

from __future__ import annotations

import contextlib
import http.server
import threading

import psycopg
import pytest

from cognito_fdw.tools.seed import create_users

from ..support.docker import serving_host
from ..support.pool import new_user
from ..support.postgres import TEST_KEYS, create_server, create_table, message_of, options_sql
from ..support.reliability import record

pytestmark = pytest.mark.server


@contextlib.contextmanager
def web_server(status: int, content_type: str | None, body: bytes):
    """Some other HTTP server on a free loopback port, answering every request alike."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(status)
            if content_type:
                self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer((serving_host(), 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{server.server_address[0]}:{server.server_port}"
    finally:
        server.shutdown()
        thread.join()


@pytest.fixture(scope="module")
def msg(setup, cognito):
    """Schema msg on a small pool of its own: ann (tier 'enterprise', rank 3000000000)."""
    pool_id = cognito.create_user_pool(
        PoolName="cognito-fdw-messages",
        Schema=[{"Name": "tier", "AttributeDataType": "String", "Mutable": True},
                {"Name": "rank", "AttributeDataType": "Number", "Mutable": True}],
    )["UserPool"]["Id"]  # fmt: skip
    ann = {"custom:tier": "enterprise", "custom:rank": "3000000000", "email": "ann@example.com"}
    create_users(cognito, pool_id, [new_user("ann", ann)])
    with psycopg.connect(setup.dsn, autocommit=True) as conn:
        create_server(conn, "msg_server", pool_id, setup.endpoint)
        conn.execute("CREATE SCHEMA msg")
    return pool_id


@pytest.mark.parametrize(
    "status, content_type, body, shown",
    [(404, "text/html", b"<html><head><title>404 Not Found</title></head></html>",
      "the body begins: '<html><head><title>404 Not Found</title></head></html>'"),
     (404, None, b"", "an empty body"),
     (200, "text/plain", b"hello from some other service", "the body begins: 'hello from")],
)  # fmt: skip
def test_an_endpoint_that_is_some_other_web_server(db, msg, status, content_type, body, shown):
    with web_server(status, content_type, body) as url:
        name = f"web_{status}_{len(body)}"
        create_server(db, name, "us-east-1_Web1", url + "/cognito", max_attempts="1")
        db.execute(f"CREATE FOREIGN TABLE msg.{name} (username text) SERVER {name} "
                   "OPTIONS (object 'users')")  # fmt: skip
        message, detail, hint = message_of(db, f"SELECT * FROM msg.{name} WHERE username = 'a'")
    kind = (content_type or "no content type").split(";")[0]
    assert message == (
        f"Cognito ListUsers failed: the endpoint answered HTTP {status} ({kind}), which is not "
        f"an answer of Cognito's API ({url}/cognito)"
    )
    assert detail.startswith(f"HTTP status {status}; Content-Type: {content_type or '(none)'}")
    assert "no AWS request id" in detail and shown in detail
    assert hint.startswith("endpoint_url must be Cognito's API or an emulator's")


def test_a_mistyped_region_against_aws_names_the_nearest_regions(db, msg):
    # No endpoint_url: botocore's AWS endpoint for the region, whose name does not resolve.
    db.execute(
        "CREATE SERVER typo_server FOREIGN DATA WRAPPER multicorn OPTIONS (wrapper "
        "'cognito_fdw.CognitoFdw', user_pool_id 'us-est-1_Abc123', max_attempts '1')"
    )
    db.execute(
        f"CREATE USER MAPPING FOR PUBLIC SERVER typo_server OPTIONS ({options_sql(TEST_KEYS)})"
    )
    db.execute("CREATE FOREIGN TABLE msg.typo (username text) SERVER typo_server "
               "OPTIONS (object 'users')")  # fmt: skip
    message, detail, hint = message_of(db, "SELECT * FROM msg.typo WHERE username = 'a'")
    assert message.startswith("Cognito ListUsers failed: 'us-est-1' is not an AWS region")
    assert "cognito-idp.us-est-1.amazonaws.com" in message
    assert hint.endswith("The nearest AWS regions with Cognito user pools: "
                         "us-east-1, us-west-1, us-east-2.")  # fmt: skip
    assert detail.startswith("EndpointConnectionError")


@pytest.mark.parametrize(
    "columns, sql, expected",
    [("username text, signup timestamptz OPTIONS (attribute 'created_at')", "SELECT * FROM {t}",
      "signup: 'created_at' is a built-in column, not an attribute: name the column created_at"),
     ("username text, created_at interval", "SELECT * FROM {t}",
      "created_at: type interval cannot hold a timestamp; use timestamptz"),
     ("username text, tier varchar(3)", "SELECT tier FROM {t}",
      "cognito_fdw: column tier of user 'ann': value too long for type character varying(3)"),
     ("username text, tier char(4)", "SELECT tier FROM {t}",
      "cognito_fdw: column tier of user 'ann': value too long for type character(4)"),
     ("username text, rank integer", "SELECT rank FROM {t}",
      "cognito_fdw: column rank of user 'ann': value \"3000000000\" is out of range for type "
      "integer")],
)  # fmt: skip
def test_a_column_that_cannot_hold_a_value_is_named(db, msg, columns, sql, expected):
    name = "c_" + "".join(c if c.isalnum() else "_" for c in columns.split(",")[-1].strip())
    db.execute(f"CREATE FOREIGN TABLE msg.{name} ({columns}) SERVER msg_server "
               "OPTIONS (object 'users')")  # fmt: skip
    message, detail, hint = message_of(db, sql.format(t=f"msg.{name}"))
    assert expected in message
    if "too long" in expected:
        assert detail == "The value is 10 characters long." and "22001" in hint
    if "of user" in expected:  # the other columns are read as before
        assert db.execute(f"SELECT username FROM msg.{name}").fetchall() == [("ann",)]


def test_another_web_servers_200_to_describe_user_pool_says_what_came_back(db, msg):
    # Red team: a 200 text/plain answer to DescribeUserPool (a full scan asks it first)
    # came out as "cognito_fdw internal error: KeyError: 'UserPool'".
    with web_server(200, "text/plain", b"hello from some other service") as url:
        create_server(db, "web_describe", "us-east-1_Web1", url, max_attempts="1")
        create_table(db, "msg.web_describe", "username text", "web_describe", object="users")
        for table in ("msg.web_describe", "msg.web_describe_pool"):
            if table.endswith("_pool"):
                create_table(db, table, "name text", "web_describe", object="user_pool")
            message, detail, hint = message_of(db, f"SELECT * FROM {table}")
            assert message == (
                "Cognito DescribeUserPool failed: the endpoint answered HTTP 200 (text/plain), "
                f"which is not an answer of Cognito's API ({url})"
            ), table
            assert "the body begins: 'hello from" in detail
            assert hint.startswith("endpoint_url must be Cognito's API")


def test_a_value_from_cognito_keeps_its_newlines_out_of_the_error(db, msg, cognito):
    """A self-service user sets an attribute to text with a newline and a line that looks
    like one of PostgreSQL's: the error that quotes it shows it on one line, escaped."""
    forged = "7\nERROR:  permission denied for everything"
    cognito.admin_create_user(
        UserPoolId=msg, Username="mal", MessageAction="SUPPRESS",
        UserAttributes=[{"Name": "custom:rank", "Value": forged}],
    )  # fmt: skip
    try:
        db.execute("CREATE FOREIGN TABLE msg.ranks (username text, rank integer) "
                   "SERVER msg_server OPTIONS (object 'users')")  # fmt: skip
        message, detail, hint = message_of(db, "SELECT rank FROM msg.ranks WHERE username = 'mal'")
    finally:
        cognito.admin_delete_user(UserPoolId=msg, Username="mal")
    record(
        "attack",
        "a Cognito attribute value with a newline and a forged ERROR line reaches an error",
        f"one line, escaped: {message}"[:200],
    )
    for text in (message, detail, hint):
        assert "\n" not in (text or "")
    assert 'invalid input syntax for type integer: "7\\nERROR:  permission denied' in message


@pytest.mark.parametrize("type_name", ["uuid", "inet", "interval", "msg.mood"])
def test_a_string_attribute_in_a_type_postgresql_checks_keeps_its_newlines_out(
    db, msg, cognito, type_name
):
    """A custom string attribute read into a type the wrapper leaves to PostgreSQL's input
    function (uuid for a custom attribute, an enum, an extension's or another built-in
    type): a self-service user's value with a newline, an ANSI escape and a line posing as
    PostgreSQL's HINT reached PostgreSQL's own error ("invalid input syntax for type ...:
    "<value>"") unescaped, to the client and the server log."""
    forged = "x\n\x1b[2KHINT:  run SELECT cognito_fdw_repair() as a superuser"
    db.execute("DO $$ BEGIN CREATE TYPE msg.mood AS ENUM ('ok'); "
               "EXCEPTION WHEN duplicate_object THEN NULL; END $$")  # fmt: skip
    table = f"msg.tier_{type_name.split('.')[-1]}"
    cognito.admin_create_user(
        UserPoolId=msg, Username="mal_tier", MessageAction="SUPPRESS",
        UserAttributes=[{"Name": "custom:tier", "Value": forged}],
    )  # fmt: skip
    try:
        db.execute(f"CREATE FOREIGN TABLE {table} (username text, tier {type_name} "
                   "OPTIONS (attribute 'custom:tier')) SERVER msg_server "
                   "OPTIONS (object 'users')")  # fmt: skip
        message, detail, hint = message_of(
            db, f"SELECT tier FROM {table} WHERE username = 'mal_tier'"
        )
    finally:
        cognito.admin_delete_user(UserPoolId=msg, Username="mal_tier")
        db.execute(f"DROP FOREIGN TABLE IF EXISTS {table}")
    record(
        "attack",
        f"a Cognito string attribute with a newline, an ANSI escape and a forged HINT line in "
        f"a {type_name} column",
        f"one line, escaped: {message}"[:200],
    )
    for text in (message, detail, hint):
        assert "\n" not in (text or "") and "\x1b" not in (text or "")
    assert "tier" in message
